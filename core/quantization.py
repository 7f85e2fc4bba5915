"""``ember.quantization``: the legacy alias of ``ember.ao.quantization`` (as torch.quantization)."""

import sys

from ember.ao import quantization as _impl
from ember.ao.nn._alias import alias_package

alias_package(__name__, _impl)
sys.modules[__name__] = _impl

# torch.quantization._numeric_suite(_fx): the numeric suite's legacy paths
from ember.ao.ns import _numeric_suite, _numeric_suite_fx  # noqa: E402

sys.modules[__name__ + "._numeric_suite"] = _numeric_suite
sys.modules[__name__ + "._numeric_suite_fx"] = _numeric_suite_fx
_impl._numeric_suite = _numeric_suite
_impl._numeric_suite_fx = _numeric_suite_fx
