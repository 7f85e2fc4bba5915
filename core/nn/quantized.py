"""``ember.nn.quantized``: an alias of ``ember.ao.nn.quantized`` (torch keeps both paths)."""

import sys

from ember.ao.nn import quantized as _impl
from ember.ao.nn._alias import alias_package

alias_package(__name__, _impl)
sys.modules[__name__] = _impl
