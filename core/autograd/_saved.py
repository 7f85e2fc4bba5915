"""A graph node's saved arrays off the per-op path: the in-place check run before its
backward (``_check_versions``) and the tensors double backward sees (``_saved_as_tensor``).

``Function`` (``function.py``) records, per op, where each saved array came from
(``_describe_saved``: an input, an output or a constant) and the version counters to check;
these methods read that record.
"""

from __future__ import annotations

# How a saved array relates to the graph, for double backward: an input, the output, or a constant.
_SAVED_INPUT, _SAVED_OUTPUT, _SAVED_CONST = 0, 1, 2
# A user Function saved a tensor that is neither its input nor its output (``x.detach()``,
# ``x.data``, an intermediate): ``saved_tensors`` gives that very object back, as PyTorch's
# (``_user_function.py``; the record holds a weak reference); its array may be an input's,
# which is not what it stands for.
_SAVED_OBJECT = 3


def _unpacked(saved):
    """The saved arrays, with those packed by a saved-tensor hook unpacked."""
    return tuple(s.get() if type(s).__name__ == "_Packed" else s for s in saved)


class _SavedMixin:
    """Methods of ``Function`` that read the saved-array record (see the module docstring)."""

    def _check_versions(self) -> None:
        for counter, expected, ref in self._versions:
            if counter[0] == expected:
                continue
            if isinstance(ref, int):
                where = f"output {ref} of {self.name()}"
                # the output's own shape and dtype: what the node saved for it may be derived
                # from it (ReLU's live mask)
                dims, dtype = self._outputs_meta[ref]
            else:
                where = (
                    f"output {ref._output_nr} of {ref.grad_fn.name()}"
                    if ref.grad_fn is not None
                    else "a leaf tensor"
                )
                dims, dtype = ref._data.shape, ref._data.dtype
            from ..backend.dtype import from_numpy_dtype

            shape = ", ".join(str(n) for n in dims)
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: [ember.{from_numpy_dtype(dtype).name} [{shape}]], "
                f"which is {where}, is at version {counter[0]}; expected version {expected} "
                "instead."
            )

    def _saved_as_tensor(self, i: int):
        kind, ref = self._saved_info[i]
        if kind == _SAVED_INPUT:
            return ref
        array = _unpacked(self._saved[i : i + 1])[0] if self._packed else self._saved[i]
        if kind == _SAVED_OBJECT:  # (a weak reference: see _user_function._adopt_saved_objects)
            obj = ref()
            if obj is not None and obj._data is array:
                return obj
            kind = _SAVED_CONST  # gone (or given new data): a tensor over the saved array
        if kind == _SAVED_CONST and not hasattr(array, "__array_namespace__"):
            if type(array).__name__ == "Opaque":  # a sparse or dispatch-subclass tensor
                return array.value
            return array  # None, Python scalars, shapes
        from . import function

        t = function.Tensor._wrap(array)
        if kind == _SAVED_OUTPUT:
            # A fresh handle on the output that still points at this node, so gradients of the
            # backward graph flow through the forward graph (no reference cycle is kept).
            t.requires_grad = True
            t.grad_fn = self
            t._output_nr = ref
        return t
