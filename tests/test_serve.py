"""ember.serve on real Ray Serve, over real HTTP to 127.0.0.1 (one Serve instance per module)."""

import base64
import concurrent.futures as cf
import json
import os
import signal
import socket
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")
requests = pytest.importorskip("requests")

import ember  # noqa: E402
import ember.nn as nn  # noqa: E402
from ember import serve as eserve  # noqa: E402

# Replicas ask for no CPU so several apps fit the logical room of a 2-core machine.
_OPTS = {"ray_actor_options": {"num_cpus": 0}}

_HANDLER = '''
import numpy as np
from ember.serve import BaseHandler


class Doubler:
    """TorchServe-shaped handler without the base class: raw JSON in, JSON out."""

    def initialize(self, context):
        self.factor = 2.0 if context.model_name else 0.0

    def preprocess(self, requests):
        return [np.asarray(r["body"], dtype=np.float64) for r in requests]

    def inference(self, batch):
        for x in batch:
            if np.any(x < 0):
                raise ArithmeticError("negative input is not allowed")
        return [x * self.factor for x in batch]

    def postprocess(self, outputs):
        return [o.tolist() for o in outputs]


class Slow(Doubler):
    """Holds each request ~30 ms (sleeping, no CPU) so a few clients keep requests ongoing."""

    def inference(self, batch):
        import time

        time.sleep(0.03 * len(batch))
        return super().inference(batch)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlp(seed: int) -> nn.Module:
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _numpy_mlp(m: nn.Module, x: np.ndarray) -> np.ndarray:
    w = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    h = np.maximum(x @ w["0.weight"].T + w["0.bias"], 0)
    return h @ w["2.weight"].T + w["2.bias"]


# Short delays and a fast metrics push so that a scale-up and a scale-down both fit a test
# (Ray's defaults: 10 s metrics interval, 30 s look-back, 30 s up / 600 s down delays).
_FAST_AUTOSCALE = {
    "target_ongoing_requests": 1,
    "metrics_interval_s": 0.2,
    "look_back_period_s": 1.0,
    "upscale_delay_s": 0.5,
    "downscale_delay_s": 1.5,
}


def _cli_autoscaling(minmax: str, extra: dict) -> dict:
    """The autoscaling_config that ``ember serve --autoscale MIN:MAX --autoscaling-config``
    hands to deploy()."""
    from ember.launcher.cli import build_parser
    from ember.launcher.serve_cmd import autoscaling_from_args

    argv = ["serve", "x.ep", "--autoscale", minmax, "--autoscaling-config", json.dumps(extra)]
    return autoscaling_from_args(build_parser().parse_args(argv))


def _init_ray(tries: int = 3) -> None:
    # Ray gives its raylet a fixed 30 s to register with the GCS; on a 2-core machine busy
    # with other jobs that can run out: start again rather than fail the module.
    for attempt in range(tries):
        try:
            ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
            return
        except Exception as e:  # Ray raises a bare Exception for the timeout
            if "timed out during startup" not in str(e) or attempt == tries - 1:
                raise
            ray.shutdown()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    from ember.export import Dim, export

    port = _free_port()
    started = not ray.is_initialized()
    if started:
        eserve.serve_env()  # the tuned settings deploy() applies to a Ray it starts
        _init_ray()
    m1, m2 = _mlp(0), _mlp(1)
    batch = Dim("batch", min=1, max=4096)
    paths = {}
    for tag, m in (("v1", m1), ("v2", m2)):
        ep = export(m, (ember.randn(2, 4),), dynamic_shapes=({0: batch},))
        paths[tag] = str(d / f"mlp_{tag}.ep")
        ember.export.save(ep, paths[tag])
    emb = nn.Sequential(nn.Embedding(11, 5), nn.Linear(5, 2))
    paths["jit"] = str(d / "tok.pt")
    ember.jit.save(ember.jit.trace(emb, ember.randint(0, 11, (2, 3))), paths["jit"])
    paths["onnx"] = str(d / "mlp.onnx")
    ember.onnx.export(
        m1,
        (ember.randn(2, 4),),
        paths["onnx"],
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )
    (d / "handler.py").write_text(_HANDLER)
    eserve.deploy_many(
        [
            dict(
                model=paths["v1"],
                name="mlp",
                num_replicas=2,
                max_batch_size=16,
                batch_wait_timeout_s=0.05,
                max_request_bytes=1 << 20,
                **_OPTS,
            ),
            dict(
                model=paths["jit"],
                name="tok",
                pad_sequences=True,
                batch_wait_timeout_s=0.05,
                **_OPTS,
            ),
            dict(model=paths["onnx"], name="onnx", **_OPTS),
            dict(model=f"{d / 'handler.py'}:Doubler", name="dbl", **_OPTS),
            dict(model=paths["v1"], name="roll", **_OPTS),
            # only test_prometheus_metrics_count_requests sends to it: its counters start at 0
            dict(model=paths["v1"], name="counted", **_OPTS),
            # starts at 2 replicas; with no load the autoscaler shrinks it to 1 (min_replicas)
            dict(
                model=f"{d / 'handler.py'}:Slow",
                name="auto",
                max_batch_size=1,
                autoscaling_config=_cli_autoscaling(
                    "1:2", {**_FAST_AUTOSCALE, "initial_replicas": 2}
                ),
                **_OPTS,
            ),
        ],
        port=port,
    )
    yield {
        "url": f"http://127.0.0.1:{port}",
        "port": port,
        "m1": m1,
        "m2": m2,
        "emb": emb,
        "paths": paths,
    }
    eserve.shutdown()
    if started:
        ray.shutdown()


def _post(url, body=None, **kw):
    return (
        requests.post(url, json=body, timeout=30, **kw)
        if body is not None
        else requests.post(url, timeout=30, **kw)
    )


def test_export_artifact_over_http(served):
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    r = _post(f"{served['url']}/mlp/predict", {"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    np.testing.assert_allclose(body["outputs"], _numpy_mlp(served["m1"], x), rtol=1e-5, atol=1e-5)
    assert body["model"] == "mlp" and len(body["version"]) == 12
    meta = requests.get(f"{served['url']}/mlp/metadata", timeout=30).json()
    assert meta["kind"] == "export"
    assert meta["inputs"][0]["shape"] == ["batch", 4]  # the dynamic dim keeps its name
    assert requests.get(f"{served['url']}/mlp/healthz", timeout=30).json()["status"] == "ok"


def test_b64_input_and_python_handle(served):
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    b64 = {"b64": base64.b64encode(x.tobytes()).decode(), "dtype": "float32", "shape": [2, 4]}
    r = _post(f"{served['url']}/mlp/predict", {"inputs": b64})
    assert r.status_code == 200, r.text
    want = _numpy_mlp(served["m1"], x)
    np.testing.assert_allclose(r.json()["outputs"], want, rtol=1e-5, atol=1e-5)
    out = eserve.predict("mlp", x)
    np.testing.assert_allclose(out["outputs"], want, rtol=1e-5, atol=1e-5)


def test_jit_artifact_int_tokens(served):
    tokens = [[1, 2, 3], [10, 0, 4]]
    r = _post(f"{served['url']}/tok/predict", {"inputs": tokens})
    assert r.status_code == 200, r.text
    with ember.no_grad():
        want = served["emb"](ember.tensor(tokens)).numpy()
    np.testing.assert_allclose(r.json()["outputs"], want, rtol=1e-5, atol=1e-6)


def test_padded_batching_of_different_lengths(served):
    seqs = [[[1, 2, 3, 4, 5, 6]], [[7, 8]], [[9, 10, 1, 2]], [[3]]] * 3
    with cf.ThreadPoolExecutor(12) as ex:
        rs = list(ex.map(lambda q: _post(f"{served['url']}/tok/predict", {"inputs": q}), seqs))
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
    assert max(r.json()["batch_size"] for r in rs) > 1
    for q, r in zip(seqs, rs):  # cut back to each request's own length
        with ember.no_grad():
            want = served["emb"](ember.tensor(q)).numpy()
        np.testing.assert_allclose(r.json()["outputs"], want, rtol=1e-5, atol=1e-6)


def test_onnx_artifact(served):
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    r = _post(f"{served['url']}/onnx/predict", {"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(
        r.json()["outputs"], _numpy_mlp(served["m1"], x), rtol=1e-4, atol=1e-5
    )
    meta = requests.get(f"{served['url']}/onnx/metadata", timeout=30).json()
    assert meta["inputs"][0]["name"] == "x" and meta["inputs"][0]["dtype"] == "float32"
    bad = _post(f"{served['url']}/onnx/predict", {"inputs": [[1, 2], [3, 4]]})
    assert bad.status_code == 422 and "dimension 1" in bad.json()["message"]


def test_batching_concurrent_requests_share_a_batch(served):
    x = [[0.5, 1.0, -1.0, 2.0]]
    with cf.ThreadPoolExecutor(16) as ex:
        rs = list(ex.map(lambda _: _post(f"{served['url']}/mlp/predict", {"inputs": x}), range(32)))
    assert all(r.status_code == 200 for r in rs)
    sizes = [r.json()["batch_size"] for r in rs]
    assert max(sizes) > 1, sizes  # several requests went through one forward pass
    want = _numpy_mlp(served["m1"], np.asarray(x, np.float32))
    for r in rs:  # split back per request correctly
        np.testing.assert_allclose(r.json()["outputs"], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "data,status,needle",
    [
        (b"{not json", 400, "malformed JSON"),
        (b'{"x": 1}', 400, '"inputs"'),
        (b'{"inputs": [[1, 2, 3]]}', 422, "dimension 1"),
        (b'{"inputs": [[1, 2], [3]]}', 422, "rectangular"),
        (b'{"inputs": [["a", "b", "c", "d"]]}', 422, "numbers only"),
        (b'{"inputs": {"b64": "AAAA", "dtype": "complex64", "shape": [1]}}', 422, "dtype"),
        (b'{"inputs": {"b64": "AAAA", "dtype": "float32", "shape": [1, 4]}}', 422, "bytes"),
        (None, 413, "exceeds the limit"),
    ],
    ids=["json", "no-inputs", "shape", "ragged", "strings", "b64-dtype", "b64-size", "size"],
)
def test_bad_input_is_4xx_and_server_keeps_serving(served, data, status, needle):
    if data is None:  # over the 1 MiB limit the fixture deploys with
        data = b'{"inputs": [[' + b"1.0, " * 250_000 + b"1.0]]}"
    r = requests.post(
        f"{served['url']}/mlp/predict",
        data=data,
        timeout=30,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == status, r.text
    assert needle in r.json()["message"]
    ok = _post(f"{served['url']}/mlp/predict", {"inputs": [[0.0, 0.0, 0.0, 0.0]]})
    assert ok.status_code == 200


def test_handler_exception_is_500_and_replica_stays_up(served):
    url = f"{served['url']}/dbl/predict"
    pid = requests.get(f"{served['url']}/dbl/healthz", timeout=30).json()["pid"]
    r = _post(url, {"inputs": [1.0, -2.0]})
    assert r.status_code == 500
    assert r.json() == {"error": "ArithmeticError", "message": "negative input is not allowed"}
    r = _post(url, {"inputs": [1.5, 2.0]})
    assert r.status_code == 200 and r.json()["outputs"] == [3.0, 4.0]
    assert requests.get(f"{served['url']}/dbl/healthz", timeout=30).json()["pid"] == pid


class _Load:
    """Background clients posting to one route; counts answers by status."""

    def __init__(self, url: str, body: dict, clients: int = 4) -> None:
        self.url, self.body, self.stop = url, body, threading.Event()
        self.results: list[tuple[float, int, str]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        s = requests.Session()
        while not self.stop.is_set():
            try:
                r = s.post(self.url, json=self.body, timeout=30)
                code, ver = r.status_code, (r.json().get("version", "") if r.ok else r.text)
            except requests.RequestException as e:
                code, ver = -1, repr(e)
            self.results.append((time.monotonic(), code, ver))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def test_rolling_update_under_load_drops_nothing(served):
    url = f"{served['url']}/roll/predict"
    v1 = _post(url, {"inputs": [[1.0, 2.0, 3.0, 4.0]]}).json()["version"]
    with _Load(url, {"inputs": [[1.0, 2.0, 3.0, 4.0]]}) as load:
        time.sleep(0.5)
        eserve.deploy(served["paths"]["v2"], name="roll", port=served["port"], **_OPTS)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not load.results or load.results[-1][2] == v1):
            time.sleep(0.2)
        time.sleep(0.5)
    codes = [c for _, c, _ in load.results]
    versions = {v for _, c, v in load.results if c == 200}
    failed = [(c, v) for _, c, v in load.results if c != 200]
    assert not failed, failed[:3]
    assert len(codes) > 10 and v1 in versions and len(versions) == 2, versions
    x = np.asarray([[1.0, 2.0, 3.0, 4.0]], np.float32)
    np.testing.assert_allclose(
        _post(url, {"inputs": x.tolist()}).json()["outputs"],
        _numpy_mlp(served["m2"], x),
        rtol=1e-5,
        atol=1e-5,
    )


def test_replica_sigkill_under_load_other_replica_answers(served):
    url = f"{served['url']}/mlp"
    # The proxy learns of replicas by long poll and routes by power of two choices, so
    # sequential probes can all land on one replica for a while: probe concurrently until
    # both have answered.
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    with cf.ThreadPoolExecutor(8) as ex:
        while len(pids) < 2 and time.monotonic() < deadline:
            got = ex.map(lambda _: requests.get(f"{url}/healthz", timeout=30).json(), range(8))
            pids.update(h["pid"] for h in got)
    assert len(pids) == 2, pids
    victim = min(pids)
    with _Load(f"{url}/predict", {"inputs": [[1.0, 1.0, 1.0, 1.0]]}) as load:
        time.sleep(0.5)
        t_kill = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        time.sleep(3.0)
    after = [c for t, c, _ in load.results if t > t_kill]
    assert after.count(200) > 10, after[:20]
    # only requests that were on the killed replica may fail: at most one per client
    assert len(after) - after.count(200) <= len(load.threads), after
    deadline = time.monotonic() + 60  # Ray Serve replaces the replica
    while time.monotonic() < deadline:
        reps = eserve.status()["mlp"]["deployments"]["mlp"]["replicas"]
        if reps.get("RUNNING") == 2:
            break
        time.sleep(0.5)
    assert reps.get("RUNNING") == 2, reps


def test_cli_serve_status_shutdown(served, capsys):
    from ember.launcher.cli import main

    address = ray.get_runtime_context().gcs_address
    rc = main(
        [
            "serve",
            served["paths"]["onnx"],
            "--name",
            "cli",
            "--port",
            str(served["port"]),
            "--address",
            address,
            "--max-batch-size",
            "4",
        ]
    )
    assert rc == 0
    assert f"http://127.0.0.1:{served['port']}/cli/predict" in capsys.readouterr().out
    x = np.ones((1, 4), np.float32)
    r = _post(f"{served['url']}/cli/predict", {"inputs": x.tolist()})
    assert r.status_code == 200
    np.testing.assert_allclose(
        r.json()["outputs"], _numpy_mlp(served["m1"], x), rtol=1e-4, atol=1e-5
    )
    assert main(["serve", "status", "--address", address]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["cli"]["status"] == "RUNNING" and "mlp" in listed
    assert main(["serve", "shutdown", "--name", "cli", "--address", address]) == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "cli" in eserve.status():
        time.sleep(0.2)
    assert "cli" not in eserve.status()
    assert _post(f"{served['url']}/cli/predict", {"inputs": x.tolist()}).status_code == 404


def test_openapi_docs_served(served):
    spec = requests.get(f"{served['url']}/mlp/openapi.json", timeout=30)
    assert spec.status_code == 200, spec.text
    paths = spec.json()["paths"]
    assert {"/predict", "/healthz", "/metadata"} <= set(paths), sorted(paths)
    assert "post" in paths["/predict"] and "get" in paths["/metadata"]
    page = requests.get(f"{served['url']}/mlp/docs", timeout=30)
    assert page.status_code == 200 and "swagger-ui" in page.text.lower()
    assert "/mlp/openapi.json" in page.text  # the page fetches the spec under the route prefix


def _wait_replicas(name: str, want: int, timeout: float) -> list:
    """Poll serve.status() until ``name`` has exactly ``want`` replicas, none in transition."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = eserve.status()[name]["deployments"][name]
        seen.append(dep["replicas"])
        if dep["replicas"] == {"RUNNING": want}:
            return seen
        time.sleep(0.2)
    raise AssertionError(
        f"{name}: never exactly {want} RUNNING replicas in {timeout} s; last states {seen[-3:]}"
    )


def test_autoscale_shrinks_idle_deployment_to_min(served, capsys):
    from ember.launcher.cli import main

    _wait_replicas("auto", 1, 60)  # deployed at 2 (initial_replicas), idle since
    address = ray.get_runtime_context().gcs_address
    assert main(["serve", "status", "--address", address]) == 0
    dep = json.loads(capsys.readouterr().out)["auto"]["deployments"]["auto"]
    assert dep["replicas"] == {"RUNNING": 1}, dep
    assert dep["status_trigger"] == "DOWNSCALE_COMPLETED", dep  # the autoscaler did it
    r = _post(f"{served['url']}/auto/predict", {"inputs": [1.5]})
    assert r.status_code == 200 and r.json()["outputs"] == [3.0]


@pytest.mark.full  # a replica start under load: ~30 s on a loaded 2-core machine
def test_autoscale_grows_under_load_and_shrinks_back(served, capsys):
    from ember.launcher.cli import main

    _wait_replicas("auto", 1, 60)
    address = ray.get_runtime_context().gcs_address
    # 4 clients, each request held 30 ms, against a target of 1 ongoing request per
    # replica: Serve wants 4 replicas and max_replicas caps it at 2
    with _Load(f"{served['url']}/auto/predict", {"inputs": [1.0, 2.0]}, clients=4) as load:
        _wait_replicas("auto", 2, 90)
        assert main(["serve", "status", "--address", address]) == 0
        dep = json.loads(capsys.readouterr().out)["auto"]["deployments"]["auto"]
        assert dep["replicas"] == {"RUNNING": 2}, dep
        assert dep["status_trigger"] in ("UPSCALE_COMPLETED", "AUTOSCALING"), dep
        time.sleep(0.5)
    codes = [c for _, c, _ in load.results]
    assert len(codes) > 10 and set(codes) == {200}, codes[-5:]
    _wait_replicas("auto", 1, 60)  # idle again: back down to min_replicas
    dep = eserve.status()["auto"]["deployments"]["auto"]
    assert dep["status_trigger"] in ("DOWNSCALE_COMPLETED", "AUTOSCALING"), dep


def test_docs_snippet_runs(served):
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[1] / "docs" / "serve.md"
    text = doc.read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, str(doc), "exec"), {"PORT": served["port"]})


def _metric(url: str, name: str, **labels) -> float:
    """The sum of a metric's samples with these labels, read from Ray's metrics endpoint the
    way a Prometheus scrape reads it (text exposition format)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url, timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_prometheus_metrics_count_requests(served):
    from ember.launcher.serve_cmd import _metrics_url

    # Ray's metrics agent serves every process's metrics on the node's metrics export port
    # (ray start --metrics-export-port; a random free one unless set); `ember serve` prints it
    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    url = _metrics_url()
    assert url is not None and url.endswith(f":{port}/metrics"), (url, port)
    replica = ("ray_serve_deployment_request_counter_total", {"deployment": "counted"})
    proxy = ("ray_serve_num_http_requests_total", {"application": "counted"})
    assert _metric(url, replica[0], **replica[1]) == 0  # nothing sent to it yet
    n = 5
    for _ in range(n):
        assert _post(f"{served['url']}/counted/predict", {"inputs": [[0.0] * 4]}).ok
    # replicas push their metrics to the agent every few seconds (metrics_report_interval_ms)
    deadline = time.time() + 60
    while time.time() < deadline:
        counts = [_metric(url, name, **labels) for name, labels in (replica, proxy)]
        if counts == [n, n]:
            break
        time.sleep(1.0)
    assert counts == [n, n], counts
