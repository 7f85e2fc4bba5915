"""benchmarks/serve.py's load and measurement: the bounded asyncio load generator (over HTTP
with aiohttp, or through a DeploymentHandle), the CPU time per request of each process (from
/proc: client, server, Serve's proxy / replicas / controller), and waiting for a server."""

from __future__ import annotations

import asyncio
import json
import os
import time


# -- load generator -------------------------------------------------------------------------
async def _load(url: str, body: dict, concurrency: int, n: int) -> dict:
    import aiohttp

    data = json.dumps(body).encode()
    lat: list[float] = []
    errors = 0
    left = min(2 * concurrency, 16)  # warm-up requests first

    async def client(session) -> None:
        nonlocal left, errors
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            async with session.post(
                url, data=data, headers={"content-type": "application/json"}
            ) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
            lat.append(time.perf_counter() - t0)

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))  # warm-up
        left, errors = n, 0
        lat.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat.sort()
    return {
        "load": os.getloadavg()[0],
        "rps": len(lat) / wall,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "errors": errors,
    }


async def _load_handle(handle, x, concurrency: int, n: int) -> dict:
    """_load's twin for a DeploymentHandle: ``await handle.infer.remote(x)`` per request."""
    lat: list[float] = []
    left = min(2 * concurrency, 16)

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            await handle.infer.remote(x)
            lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(client() for _ in range(concurrency)))  # warm-up
    left = n
    lat.clear()
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "load": os.getloadavg()[0],
        "rps": len(lat) / wall,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "errors": 0,
    }


def _run(coro) -> dict:
    return asyncio.run(coro)


# -- CPU time per request, per process (Linux /proc) ------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (threads included); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _serve_pids(app: str) -> dict:
    """Serve's processes by role, found by the titles Ray gives its workers."""
    roles = {
        "proxy": b"ray::ProxyActor",
        "controller": b"ray::ServeController",
        "replicas": f"ray::ServeReplica:{app}:".encode(),
    }
    out: dict = {r: [] for r in roles}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        for role, title in roles.items():
            if cmd.startswith(title):
                out[role].append(int(d))
    return out


def _measured(run, pids: dict, n: int) -> dict:
    """Run one cell; add the CPU ms per request that each role's processes spent in it.
    (The warm-up requests are included in the CPU, n only counts the timed ones.)"""
    pids = {"client": [os.getpid()], **pids}
    before = {r: sum(_cpu_s(p) for p in ps) for r, ps in pids.items()}
    result = run()
    for r, ps in pids.items():
        result[f"cpu_ms_{r}"] = 1000 * (sum(_cpu_s(p) for p in ps) - before[r]) / n
    return result


def _direct_port(name: str, pids: dict) -> int:
    """The port a direct-ingress replica listens on: the one whose /healthz has its pid."""
    import requests
    from ray.serve._private import constants as c

    for port in range(
        c.RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT, c.RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT + 64
    ):
        try:
            r = requests.get(f"http://127.0.0.1:{port}/{name}/healthz", timeout=2)
        except requests.RequestException:
            continue
        if r.ok and r.json().get("pid") in pids["replicas"]:
            return port
    raise RuntimeError(f"no direct-ingress port found for {name} (replicas {pids['replicas']})")


def _wait_http(url: str, timeout: float = 120.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not come up in {timeout:.0f} s")
