"""``ember.func``: composable function transforms (PyTorch's ``torch.func``).

``grad``, ``grad_and_value``, ``vjp``, ``jvp``, ``linearize``, ``jacrev``, ``jacfwd``,
``hessian``, ``functionalize``, ``functional_call``, ``stack_module_state`` and ``vmap``
(batching rules, ``_vmap*.py``). The transforms
run eagerly on ember's autograd graph (see ``_common.py``): they nest (``grad(grad(f))``,
``jacfwd(jacrev(f))``), accept pytrees (tuples, lists, dicts) of tensors, never set ``.grad``,
and ignore the caller's ``no_grad`` as PyTorch's do. Forward mode uses the double-vjp
construction (``_forward.py``). See docs/func.md.
"""

from ._jacobians import hessian, jacfwd, jacrev
from ._module import functional_call, stack_module_state
from ._transforms import functionalize, grad, grad_and_value, jvp, linearize, vjp
from ._vmap import vmap

__all__ = [
    "functional_call",
    "stack_module_state",
    "grad",
    "grad_and_value",
    "vjp",
    "jvp",
    "jacrev",
    "jacfwd",
    "hessian",
    "linearize",
    "functionalize",
    "vmap",
]
