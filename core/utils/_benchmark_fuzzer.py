"""``Fuzzer``, ``FuzzedParameter``, ``FuzzedTensor`` and ``ParameterAlias`` of
``ember.utils.benchmark`` (PyTorch's ``torch.utils.benchmark`` input generators).

Parameters are drawn from a NumPy ``RandomState(seed)`` in PyTorch's order, so a seed gives
PyTorch's sizes, strides and contiguity; the tensor values come from ember's generator (seeded
from the same state) and differ from PyTorch's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

_DISTRIBUTIONS = ("loguniform", "uniform")


class FuzzedParameter:
    """One scalar a :class:`Fuzzer` draws per case.

    Args:
        name: the parameter's name (in the ``params`` dict, and usable in a
            :class:`FuzzedTensor`'s ``size`` / ``steps``).
        minval, maxval: the range for ``"uniform"`` (ints give ints, both ends included) and
            ``"loguniform"`` (an int drawn uniformly in log2 space).
        distribution: ``"uniform"``, ``"loguniform"`` or ``{value: probability}``.
        strict: keep the first value drawn for the whole of one case's rejection sampling.
    """

    def __init__(
        self,
        name: str,
        minval: int | float | None = None,
        maxval: int | float | None = None,
        distribution: str | dict | None = None,
        strict: bool = False,
    ) -> None:
        self._name = name
        self._minval, self._maxval = minval, maxval
        self._distribution = self._check_distribution(distribution)
        self.strict = strict

    @property
    def name(self) -> str:
        return self._name

    def _check_distribution(self, distribution):
        if isinstance(distribution, dict):
            if any(p < 0 for p in distribution.values()):
                raise ValueError(
                    f"FuzzedParameter {self._name!r}: probabilities cannot be negative"
                )
            if abs(sum(distribution.values()) - 1) > 1e-5:
                raise ValueError(f"FuzzedParameter {self._name!r}: the distribution must sum to 1")
            if self._minval is not None or self._maxval is not None:
                raise ValueError(
                    f"FuzzedParameter {self._name!r}: minval and maxval must be None with a "
                    "custom distribution"
                )
            return distribution
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(
                f"FuzzedParameter {self._name!r}: unknown distribution {distribution!r} "
                f"(expected one of {_DISTRIBUTIONS} or a dict of probabilities)"
            )
        return distribution

    def sample(self, state: np.random.RandomState):
        if self._distribution == "loguniform":
            lo = np.log2(self._minval) if self._minval is not None else None
            hi = np.log2(self._maxval) if self._maxval is not None else None
            out = int(2 ** state.uniform(low=lo, high=hi))
            if self._minval is not None and out < self._minval:
                return self._minval
            if self._maxval is not None and out > self._maxval:
                return self._maxval
            return out
        if self._distribution == "uniform":
            if isinstance(self._minval, int) and isinstance(self._maxval, int):
                return int(state.randint(low=self._minval, high=self._maxval + 1))
            return state.uniform(low=self._minval, high=self._maxval)
        keys = list(self._distribution)
        index = state.choice(np.arange(len(keys)), p=tuple(self._distribution.values()))
        return keys[index]


class ParameterAlias:
    """A parameter whose value is another parameter's (``FuzzedParameter("k1",
    distribution={ParameterAlias("k0"): 0.2, ...})``)."""

    def __init__(self, alias_to: str) -> None:
        self.alias_to = alias_to

    def __repr__(self) -> str:
        return f"ParameterAlias[alias_to: {self.alias_to}]"


class FuzzedTensor:
    """A tensor a :class:`Fuzzer` makes per case.

    Args:
        name: the key of the tensor in the ``tensors`` dict.
        size: the sizes, each an int or a parameter name.
        steps: the strides of the slice taken of a larger allocation (ints or names).
        probability_contiguous: the chance the tensor is left contiguous; otherwise its memory
            order is a random permutation of the dimensions.
        min_elements, max_elements, max_allocation_bytes: cases outside are rejected.
        dim_parameter: a parameter giving the number of dimensions (``size`` is cut / padded).
        roll_parameter: not supported (as in PyTorch, where it is unused).
        tensor_constructor: ``(size=, dtype=, **params) -> Tensor`` (default: ``rand`` for
            floating dtypes, ``randint(1, 127)`` otherwise).
        dtype: the dtype (default ``float32``).
        cuda: move the tensor to the GPU.
    """

    def __init__(
        self,
        name: str,
        size: tuple,
        steps: tuple | None = None,
        probability_contiguous: float = 0.5,
        min_elements: int | None = None,
        max_elements: int | None = None,
        max_allocation_bytes: int | None = None,
        dim_parameter: str | None = None,
        roll_parameter: str | None = None,
        dtype=None,
        cuda: bool = False,
        tensor_constructor: Callable | None = None,
    ) -> None:
        import ember

        if roll_parameter is not None:
            raise NotImplementedError("FuzzedTensor: roll_parameter is not supported")
        self._name, self._size, self._steps = name, size, steps
        self._probability_contiguous = probability_contiguous
        self._min_elements, self._max_elements = min_elements, max_elements
        self._max_allocation_bytes = max_allocation_bytes
        self._dim_parameter = dim_parameter
        self._dtype = dtype or ember.float32
        self._cuda = cuda
        self._tensor_constructor = tensor_constructor

    @property
    def name(self) -> str:
        return self._name

    @staticmethod
    def default_tensor_constructor(size, dtype, **kwargs):
        import ember

        if dtype.is_floating_point or dtype.is_complex:
            return ember.rand(tuple(size), dtype=dtype)
        return ember.randint(1, 127, tuple(size), dtype=dtype)

    def _get_size_and_steps(self, params: dict):
        dim = params[self._dim_parameter] if self._dim_parameter is not None else len(self._size)

        def resolve(values) -> tuple:
            values = tuple(params.get(v, v) for v in values)[:dim]
            return values + (1,) * (dim - len(values))

        size, steps = resolve(self._size), resolve(self._steps or ())
        return size, steps, tuple(s * t for s, t in zip(size, steps))

    def satisfies_constraints(self, params: dict) -> bool:
        size, _, allocation = self._get_size_and_steps(params)
        numel = math.prod(size)
        nbytes = math.prod(allocation) * self._dtype.itemsize

        def over(a, b) -> bool:
            return a is not None and b is not None and a > b

        return not (
            over(numel, self._max_elements)
            or over(self._min_elements, numel)
            or over(nbytes, self._max_allocation_bytes)
        )

    def _make_tensor(self, params: dict, state: np.random.RandomState):
        size, steps, allocation = self._get_size_and_steps(params)
        make = self._tensor_constructor or self.default_tensor_constructor
        raw = make(size=allocation, dtype=self._dtype, **params)
        if self._cuda:
            raw = raw.cuda()
        dim = len(size)
        order = np.arange(dim)
        if state.rand() > self._probability_contiguous:
            # lay the memory out in a random dimension order, then view it in the original one
            while dim > 1 and np.all(order == np.arange(dim)):
                order = state.permutation(raw.dim())
            raw = raw.permute(tuple(int(i) for i in order)).contiguous()
            raw = raw.permute(tuple(int(i) for i in np.argsort(order)))
        tensor = raw[tuple(slice(0, n * s, s) for n, s in zip(size, steps))]
        properties = {
            "numel": int(tensor.numel()),
            "order": order,
            "steps": steps,
            "is_contiguous": tensor.is_contiguous(),
            "dtype": str(self._dtype),
        }
        return tensor, properties


class Fuzzer:
    """Random benchmark inputs: each case draws the parameters (rejecting those that break
    ``constraints`` or a tensor's size limits) and makes the tensors.

    Args:
        parameters: :class:`FuzzedParameter` s (or lists of them).
        tensors: :class:`FuzzedTensor` s (or lists of them).
        constraints: callables ``params -> bool``.
        seed: the NumPy seed (random if None).
    """

    def __init__(
        self,
        parameters: Iterable,
        tensors: Iterable,
        constraints: Iterable[Callable] | None = None,
        seed: int | None = None,
    ) -> None:
        if seed is None:
            seed = int(np.random.RandomState().randint(0, 2**32 - 1, dtype=np.int64))
        self._seed = seed
        self._parameters = self._unpack(parameters, FuzzedParameter)
        self._tensors = self._unpack(tensors, FuzzedTensor)
        self._constraints = tuple(constraints or ())
        names = [p.name for p in self._parameters] + [t.name for t in self._tensors]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Fuzzer: duplicate names {duplicates}")
        self._total_generated = 0
        self._rejections = 0

    @staticmethod
    def _unpack(values, cls) -> tuple:
        return tuple(
            itertools.chain.from_iterable([v] if isinstance(v, cls) else v for v in values)
        )

    def take(self, n: int) -> Iterator[tuple[dict, dict, dict]]:
        """``n`` cases of ``(tensors, tensor_properties, params)``."""
        import ember

        state = np.random.RandomState(self._seed)
        ember.manual_seed(int(state.randint(low=0, high=2**63, dtype=np.int64)))
        for _ in range(n):
            params = self._generate(state)
            tensors, properties = {}, {}
            for t in self._tensors:
                tensors[t.name], properties[t.name] = t._make_tensor(params, state)
            yield tensors, properties, params

    @property
    def rejection_rate(self) -> float:
        return self._rejections / self._total_generated if self._total_generated else 0.0

    def _generate(self, state: np.random.RandomState) -> dict[str, Any]:
        strict: dict[str, Any] = {}
        for _ in range(1000):
            params: dict[str, Any] = {}
            for p in self._parameters:
                if p.strict and p.name in strict:
                    params[p.name] = strict[p.name]
                else:
                    params[p.name] = p.sample(state)
                    if p.strict:
                        strict[p.name] = params[p.name]
            params = _resolve_aliases(params)
            self._total_generated += 1
            if not all(f(params) for f in self._constraints) or not all(
                t.satisfies_constraints(params) for t in self._tensors
            ):
                self._rejections += 1
                continue
            return params
        raise ValueError("Fuzzer: failed to generate a set of valid parameters in 1000 tries")


def _resolve_aliases(params: dict) -> dict:
    params = dict(params)
    pending = sum(isinstance(v, ParameterAlias) for v in params.values())
    while pending:
        for k, v in list(params.items()):
            if isinstance(v, ParameterAlias):
                params[k] = params[v.alias_to]
        now = sum(isinstance(v, ParameterAlias) for v in params.values())
        if now == pending:
            raise ValueError(f"ParameterAlias cycle detected\n{params}")
        pending = now
    return params
