"""``ember.nn.qat``: an alias of ``ember.ao.nn.qat`` (torch keeps both paths)."""

import sys

from ember.ao.nn import qat as _impl
from ember.ao.nn._alias import alias_package

alias_package(__name__, _impl)
sys.modules[__name__] = _impl
