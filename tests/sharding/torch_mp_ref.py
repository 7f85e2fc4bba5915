"""PyTorch's FSDP with MixedPrecision(bfloat16) on one gloo rank: ``python torch_mp_ref.py OUT``
writes the initial weights, the input, and what torch produces (test_units compares)."""

from __future__ import annotations

import os
import socket
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp import MixedPrecision


def main(out: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.Linear(7, 3))
    m.register_buffer("stat", torch.full((3,), 1.1))
    init = {f"init/{k}": v.detach().numpy().copy() for k, v in m.state_dict().items()}
    mp = MixedPrecision(torch.bfloat16, reduce_dtype=torch.float32, buffer_dtype=torch.bfloat16)
    f = FSDP(m, mixed_precision=mp, device_id=torch.device("cpu"))
    opt = torch.optim.SGD(f.parameters(), lr=1.0)
    x = torch.randn(4, 5)
    y = f(x)
    y.float().square().sum().backward()
    grad_dtypes = sorted({str(p.grad.dtype) for p in f.parameters()})
    opt.step()
    sd = {f"after/{k}": v.numpy() for k, v in f.state_dict().items()}
    np.savez(
        out,
        x=x.numpy(),
        y=y.float().detach().numpy(),
        **init,
        **sd,
        meta=np.array([str(y.dtype), str(m.stat.dtype), *grad_dtypes]),
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
