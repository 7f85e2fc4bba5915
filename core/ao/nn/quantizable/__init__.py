"""``nn.quantizable``: float modules that static quantization can observe inside (torch's
``LSTM`` and ``MultiheadAttention``). ember has none of them yet: quantize an LSTM with
``quantize_dynamic``; attention stays float (set its ``qconfig = None``)."""

__all__: list[str] = []


def __getattr__(name):
    raise AttributeError(
        f"ember.ao.nn.quantizable has no {name!r}: static quantization of "
        f"LSTM / MultiheadAttention is not implemented in ember (use "
        f"ember.ao.quantization.quantize_dynamic for LSTM)"
    )
