"""``ember.nn.intrinsic``: an alias of ``ember.ao.nn.intrinsic`` (torch keeps both paths)."""

import sys

from ember.ao.nn import intrinsic as _impl
from ember.ao.nn._alias import alias_package

alias_package(__name__, _impl)
sys.modules[__name__] = _impl
