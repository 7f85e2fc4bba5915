"""``ember.quantization``: the legacy alias of ``ember.ao.quantization`` (as torch.quantization)."""

import sys

from ember.ao import quantization as _impl
from ember.ao.nn._alias import alias_package

alias_package(__name__, _impl)
sys.modules[__name__] = _impl
