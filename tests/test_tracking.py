"""MLflow review of a sweep, read back through MlflowClient from a real `mlflow server`
(sqlite backend, artifacts in a tmp folder) as `mlflow ui` would show it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port, run_cli, write
from trainables.errors import SpecError
from trainables.tracking.sender import PERMANENT, Sender, _is_transient
from trainables.tracking.server import check_reachable, resolve_uri
from trainables.tracking.values import RAY_KEYS, metrics_of, param_value, step_of

# Per-epoch series; the constants (parameter counts, lr without a schedule) are params of the run.
EPOCH_METRICS = {"train_loss", "train_acc", "val_loss", "val_acc", "epoch_seconds", "samples_per_second"}
CONSTANTS = {"trainable_params", "total_params", "lr"}

SPEC = """\
name: {name}
dataset: {{name: digits, limit: {limit}}}
epochs: {epochs}
parameters:
  model: cnn
  filters: [8, 8, 8, 8, 8]
  dense_units: 16
  lr: {{loguniform: [1.0e-3, 1.0e-2]}}
  activation: {{choice: [relu, gelu]}}
search: {{algorithm: optuna, num_samples: {samples}, max_concurrent: 2, seed: 0}}
scheduler: {{name: asha, grace_period: 1, reduction_factor: 2}}
tracking: {{uri: "{uri}", register: true}}
final: {{retrain_best: {retrain}}}
"""


def spec_file(tmp_path: Path, name: str, uri: str, *, samples=4, epochs=3, limit=300, retrain="true") -> Path:
    return write(tmp_path / f"{name}.yaml", SPEC.format(name=name, uri=uri, samples=samples, epochs=epochs,
                                                          limit=limit, retrain=retrain))


# ---- a real MLflow tracking server ------------------------------------------------------

class MlflowServer:
    """`mlflow server` with a sqlite backend and proxied artifacts in `root`; stop() and start()
    again keep its data (a restarted server)."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner: starts in seconds
        env.pop("MLFLOW_TRACKING_URI", None)
        log = open(self.root / "server.log", "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-3000:]
            try:
                if requests.get(self.uri + "/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"mlflow server did not start; see {self.root / 'server.log'}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()


def client_for(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def runs_of(client, experiment: str):
    """(parents, children) of an experiment, as `mlflow ui` lists them."""
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    runs = list(client.search_runs([exp.experiment_id], max_results=1000))
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def steps(client, run_id: str, key: str = "val_acc") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


# ---- units ------------------------------------------------------------------------------

def test_uri_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None) == f"sqlite:///{tmp_path}/mlflow.db"  # MLflow's default, made absolute
    assert resolve_uri("sqlite:///sub/runs.db") == f"sqlite:///{tmp_path}/sub/runs.db"
    assert resolve_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert resolve_uri("mlruns") == str(tmp_path / "mlruns")
    assert resolve_uri("http://host:5000") == "http://host:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_uri(None) == "http://env:5000"
    assert resolve_uri("http://spec:5000") == "http://spec:5000"  # tracking.uri wins
    assert resolve_uri(f"Sqlite:///{tmp_path}/m.db") == f"sqlite:///{tmp_path}/m.db"  # SQLAlchemy: lower case only


def test_reachability(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SpecError) as e:
        check_reachable(dead, timeout=2)
    assert dead in str(e.value) and "does not answer" in str(e.value) and e.value.path == "tracking.uri"
    check_reachable(f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(SpecError, match="not a writable folder"):
        check_reachable(f"sqlite:///{tmp_path}/missing/mlflow.db")
    # each passed `tune validate`, then failed (or kept nothing) once Ray had started
    (tmp_path / "garbage.db").write_text("not a database")
    (tmp_path / "dir.db").mkdir()
    for uri, words in [("sqlite://", "in memory"), ("sqlite:///:memory:", "in memory"),
                       (f"sqlite:///{tmp_path}/garbage.db", "not an SQLite database"),
                       (f"sqlite:///{tmp_path}/dir.db", "not an SQLite database"),
                       (f"sqlite:///{tmp_path}/{'d' * 300}/x.db", "File name too long"),  # was OSError's traceback
                       (f"sqlite:///{tmp_path}/a\0b.db", "NUL character"),
                       ("sqlite:/x.db", "an SQLite URI is")]:
        with pytest.raises(SpecError, match=words) as e:
            check_reachable(uri)
        assert e.value.path == "tracking.uri"



def test_a_folder_store_is_refused_before_the_sweep_as_mlflow_would_refuse_it(tmp_path, monkeypatch):
    """MLflow 3 refuses its file store unless MLFLOW_ALLOW_FILE_STORE=true: a folder passed `tune validate`,
    then the sweep stopped once Ray had started, its hint cut off."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    for uri in (str(tmp_path / "mlruns"), (tmp_path / "mlruns").as_uri()):
        with pytest.raises(SpecError, match="MLflow refuses .* sqlite:///mlflow.db .* MLFLOW_ALLOW_FILE_STORE=true"):
            check_reachable(uri)
    from trainables.tracking.models import attach_report

    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "mlflow_run.json").write_text(f'{{"tracking_uri": "{tmp_path}/mlruns", "run_id": "r1"}}')
    line = attach_report(str(tmp_path / "sweep"), tmp_path)  # said whole (was cut before its remedy)
    assert "not attached" in line and "MLFLOW_ALLOW_FILE_STORE=true" in line and "again later" not in line, line
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "yes")  # MLflow's ValueError was a traceback
    with pytest.raises(SpecError, match="MLFLOW_ALLOW_FILE_STORE='yes' is not true or false"):
        check_reachable(str(tmp_path / "mlruns"))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check_reachable(str(tmp_path / "mlruns"))  # the user's choice, as MLflow allows it


def test_a_server_that_sends_its_answer_a_byte_at_a_time_is_not_waited_for():
    """requests' timeout is per read: a /health body dribbled a byte every 2 s held `tune validate` forever."""
    import http.server
    import threading

    class Dribble(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(2)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dribble)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        t0 = time.monotonic()
        check_reachable(f"http://127.0.0.1:{server.server_port}", timeout=2)
        assert time.monotonic() - t0 < 5
    finally:
        server.shutdown()


def test_a_server_behind_tls_and_a_password_is_reached_as_mlflow_reaches_it(tmp_path, monkeypatch):
    """The /health check sent no credentials and trusted only public CAs: a server MLflow itself reaches
    (MLFLOW_TRACKING_USERNAME/PASSWORD, MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_INSECURE_TLS) was refused."""
    import base64
    import http.server
    import ssl
    import threading

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    expected = "Basic " + base64.b64encode(b"ann:s3cret").decode()

    class Guarded(http.server.BaseHTTPRequestHandler):  # a proxy that guards every path, /health too
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.headers.get("Authorization") == expected else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Guarded)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"https://127.0.0.1:{server.server_port}"
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials
    try:
        with pytest.raises(SpecError, match="TLS certificate is not trusted: set MLFLOW_TRACKING_SERVER_CERT_PATH"):
            check_reachable(uri, timeout=5)
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(tmp_path / "cert.pem"))
        with pytest.raises(SpecError, match="HTTP 401; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"):
            check_reachable(uri, timeout=5)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ann")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
        check_reachable(uri, timeout=5)
        monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
        monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
        check_reachable(uri, timeout=5)
        # a setting that cannot be used is named, not taken for a server that does not answer
        for key, value, words in (("MLFLOW_TRACKING_INSECURE_TLS", "maybe", "must be one of"),
                                  ("MLFLOW_TRACKING_CLIENT_CERT_PATH", str(tmp_path / "none.pem"), "is not a file")):
            monkeypatch.setenv(key, value)
            with pytest.raises(SpecError, match=words) as e:
                check_reachable(uri, timeout=5)
            assert "does not answer" not in str(e.value)
            monkeypatch.delenv(key)
    finally:
        server.shutdown()


def test_tracking_faults_in_a_few_words():
    from trainables.tracking.server import reason

    five_hundred = RuntimeError("API request to http://h:1/api failed with exception HTTPConnectionPool(host='h', "
                                "port=1): Max retries exceeded with url: /api (Caused by ResponseError('too many "
                                "500 error responses'))")
    assert reason(five_hundred) == "HTTP 500 each time"  # was "no connection": the server was there
    refused = RuntimeError("HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /x (Caused by "
                           "NewConnectionError('...: Failed to establish a new connection: [Errno 111] Connection "
                           "refused'))")
    assert reason(refused) == "connection refused"
    plain = RuntimeError("HTTPSConnectionPool(host='h', port=5000): Max retries exceeded with url: /health (Caused by "
                         "SSLError(SSLError(1, '[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)')))")
    assert reason(plain) == "it does not speak TLS: use http://"  # https:// to a plain server: no CA would help


def test_metrics_drop_ray_internals():
    result = {"epoch": 3, "training_iteration": 3, "val_acc": 0.5, "train_loss": 1.0, "trainable_params": 10,
              "time_total_s": 2.0, "timestamp": 5, "pid": 7, "hostname": "h", "node_ip": "1.2.3.4", "done": False,
              "config": {"lr": 0.1}, "config/lr": 0.1, "trial_id": "x", "gpu_id": 0, "diverged": True}
    assert metrics_of(result) == {"val_acc": 0.5, "train_loss": 1.0, "trainable_params": 10.0}
    assert step_of(result) == 3 and step_of({"training_iteration": 2}) == 2 and step_of({}) is None
    assert param_value([3, 5]) == "[3, 5]" and param_value(True) == "True" and param_value(0.1) == "0.1"


def test_sender_keeps_what_failed_until_it_arrives():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    said, done, calls = [], [], {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            raise MlflowException("API request failed with exception Connection refused")  # transient
        done.append("flaky")

    def refused():
        raise MlflowException("bad param", error_code=INVALID_PARAMETER_VALUE)

    assert "INVALID_PARAMETER_VALUE" in PERMANENT
    sender = Sender(said.append, "http://x", lambda: False)
    sender.submit("a batch", flaky)
    sender.submit("a refused op", refused)
    sender.submit("the next op", lambda: done.append("next"))
    assert sender.drain(20)
    assert done == ["flaky", "next"] and calls["n"] == 3 and sender.dropped == 1
    assert any("did not take a batch" in s for s in said) and any("answers again" in s for s in said)
    # an artifact store on this machine that cannot be written: dropped at once (it held the queue ~35 s)
    def unwritable():
        raise NotADirectoryError(20, "Not a directory", "/tmp/afile/arts")

    sender = Sender(said.append, "http://x", lambda: False)
    sender.submit("an artifact", unwritable)
    sender.submit("the next op", lambda: done.append("after"))
    t0 = time.monotonic()
    assert sender.drain(20) and done[-1] == "after" and sender.dropped == 1 and time.monotonic() - t0 < 2
    import requests

    assert _is_transient(requests.ConnectionError("refused")) and _is_transient(ConnectionResetError())


# ---- real sweeps against the server -----------------------------------------------------

@pytest.mark.slow
def test_unreachable_server_exits_2_before_any_trial(ray_address, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    spec = spec_file(tmp_path, "unreachable", dead)
    proc = run_cli("run", spec, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert dead in proc.stderr and "does not answer" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "results" / "unreachable").glob("trial_*"))


@pytest.mark.slow
def test_sweep_review_in_mlflow_report_and_resume(ray_address, mlflow_server, tmp_path, monkeypatch):
    from trainables.results.read import load_sweep
    from trainables.spec.load import load_spec

    name = "review"
    spec = spec_file(tmp_path, name, mlflow_server.uri)
    # The driver (MLflow, Optuna, Ray Tune, retrain, registry, report) never imports torch: ~500 MB and
    # 1.5 s less per `tune run`; the model is made and packed where it trains.
    said = "import atexit, sys; atexit.register(lambda: print('driver imported torch:', 'torch' in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", f"{said}; from trainables.cli import main; main()", "run", spec],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert mlflow_server.uri in out and "report: reports/review/report.md" in out
    assert "driver imported torch: False" in out
    sweep = load_sweep(str(tmp_path / "results" / name))
    client = client_for(mlflow_server.uri)
    parents, children = runs_of(client, name)

    # One parent: its tags, the YAML, the summary, the retrained model's test metrics.
    assert len(parents) == 1
    parent = parents[0]
    tags = parent.data.tags
    assert tags["spec_hash"] == load_spec(spec).text_hash and tags["search_algorithm"] == "optuna"
    assert tags["scheduler"] == "asha" and tags["git_commit"] and tags["package_version"]
    assert tags["sweep_path"] == str(tmp_path / "results" / name)
    assert parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "spec")} >= {f"spec/{name}.yaml"}
    m = parent.data.metrics
    counts = sweep.counts()
    assert m["best_val_acc"] == pytest.approx(sweep.best().value("val_acc"))
    assert (m["trials_completed"], m["trials_stopped_early"], m["trials_errored"]) == (
        counts["completed"], counts["stopped early"], counts["errored"])
    assert m["wall_seconds"] > 0 and 0 <= m["test_acc"] <= 1 and m["test_loss"] > 0

    # One nested child per trial: clean params, one val_acc per epoch it ran, status, node and GPU.
    assert len(children) == len(sweep.trials) == 4
    by_trial = {c.data.tags["trial_id"]: c for c in children}
    assert set(by_trial) == {t.trial_id for t in sweep.trials}
    for t in sweep.trials:
        c = by_trial[t.trial_id]
        assert c.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {k: v for k, v in c.data.params.items() if k not in CONSTANTS - {"lr"}} == {
            k: param_value(v) for k, v in t.config.items()}
        assert CONSTANTS <= set(c.data.params) and c.data.params["lr"] == param_value(t.config["lr"])
        assert not any(k in RAY_KEYS or k.startswith("config") for k in c.data.params)
        assert set(c.data.metrics) == EPOCH_METRICS | {"epochs_trained", "final_val_acc"}
        assert c.data.metrics["epochs_trained"] == t.epochs
        assert steps(client, c.info.run_id) == list(range(1, t.epochs + 1))
        assert steps(client, c.info.run_id, "samples_per_second") == list(range(1, t.epochs + 1))
        assert c.data.tags["status"] == t.status and c.data.tags["node"] and c.data.tags["gpu"] == "none"
        assert c.info.status == ("FAILED" if t.status == "errored" else "FINISHED")

    # The retrained best model, registered under the experiment's name.
    versions = client.search_model_versions(f"name='{name}'")
    assert len(versions) == 1 and versions[0].run_id == parent.info.run_id
    assert parent.data.tags["model_uri"] == versions[0].source
    # ... the same model as the sweep folder's best_model/ (an MLflow model) and best_model.pt
    import mlflow.pytorch
    import torch

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)  # for models:/ URIs; not left to later tests
    logged = mlflow.pytorch.load_model(parent.data.tags["model_uri"]).eval()
    local = mlflow.pytorch.load_model(str(tmp_path / "results" / name / "best_model")).eval()
    weights = torch.load(tmp_path / "results" / name / "best_model.pt", weights_only=True)
    x = torch.randn(3, 1, 32, 32)
    assert torch.equal(logged(x), local(x))
    assert all(torch.equal(v, weights[k]) for k, v in logged.state_dict().items())

    # The report, written at the end of `tune run` and attached to the parent.
    report = tmp_path / "reports" / name
    assert (report / "report.md").is_file() and (report / "report.html").is_file()
    assert len(list((report / "figures").glob("*.png"))) >= 6
    attached = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/report.html", "report/figures"} <= attached

    # `tune report` writes it again (here: elsewhere) and attaches it.
    proc = run_cli("report", name, "--out", "elsewhere", cwd=tmp_path, check=0)
    assert "attached to parent run" in proc.stdout
    assert (tmp_path / "elsewhere" / name / "report.md").is_file()

    # --resume continues the same parent and duplicates nothing (the model is not logged again).
    before = {c.data.tags["trial_id"]: steps(client, c.info.run_id) for c in children}
    run_cli("run", spec, "--resume", cwd=tmp_path, check=0)
    parents2, children2 = runs_of(client, name)
    assert [p.info.run_id for p in parents2] == [parent.info.run_id]
    assert {c.data.tags["trial_id"]: steps(client, c.info.run_id) for c in children2} == before
    assert len(client.search_model_versions(f"name='{name}'")) == 1


@pytest.mark.slow
def test_a_server_restarted_mid_sweep_loses_no_metric(ray_address, mlflow_server, tmp_path):
    from trainables.results.read import load_sweep

    server, name = mlflow_server, "restart"
    spec = spec_file(tmp_path, name, server.uri, samples=4, epochs=4, limit=600, retrain="false")
    driver = subprocess.Popen([sys.executable, "-m", "trainables", "run", str(spec)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = client_for(server.uri)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and driver.poll() is None:  # the first epochs have arrived ...
            exp = client.get_experiment_by_name(name)
            if exp and any(r.data.metrics for r in client.search_runs([exp.experiment_id])):
                break
            time.sleep(0.5)
        assert driver.poll() is None, driver.stdout.read()
        server.stop()  # ... then the server goes away while trials train,
        time.sleep(3)
    finally:
        server.start()  # and comes back (same database, same port).
    output, _ = driver.communicate(timeout=400)
    assert driver.returncode == 0, output
    assert "did not take" in output and "answers again" in output, output
    sweep = load_sweep(str(tmp_path / "results" / name))
    parents, children = runs_of(client, name)
    assert len(parents) == 1 and len(children) == len(sweep.trials) == 4
    by_trial = {c.data.tags["trial_id"]: c for c in children}
    for t in sweep.trials:
        c = by_trial[t.trial_id]
        for key in EPOCH_METRICS:
            assert steps(client, c.info.run_id, key) == list(range(1, t.epochs + 1)), (t.trial_id, key)
        assert c.data.tags["status"] == t.status
    assert parents[0].data.metrics["trials_total"] == 4 and parents[0].info.status == "FINISHED"


def test_the_retrained_model_is_logged_in_the_sweeps_experiment_linked_to_its_parent(tmp_path):
    """Not in MLflow's Default experiment: the parent run's "Logged models" lists it, the best
    configuration as its params, and its registered version points back at the same experiment."""
    import torch
    from mlflow import MlflowClient

    from trainables.results.retrained import write_model_folder
    from trainables.spec.load import parse_spec
    from trainables.tracking.models import package_model
    from trainables.tracking.runs import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec(SPEC.format(name="logged", limit=100, epochs=1, samples=1, uri=uri, retrain="true"))
    tracker = Tracker(spec, str(tmp_path / "sweep"))
    tracker.check()
    tracker.start()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    info = {"trial_id": "abc", "test_acc": 0.9, "test_loss": 0.3, "history": [],
            "config": {"lr": 0.01, "filters": [8, 8, 8, 8, 8]}}
    got = {}
    folder = write_model_folder(package_model(model, torch.zeros(1, 1, 2, 2)), tmp_path / "model")
    tracker.log_retrained(info, lambda: str(folder), on_logged=got.update)
    assert tracker.finish(None, wall_seconds=1.0, wait=120)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("logged").experiment_id
    (logged,) = client.search_logged_models(experiment_ids=[experiment])
    assert logged.source_run_id == tracker.parent_id and logged.params["lr"] == "0.01"
    assert logged.params["filters"] == "[8, 8, 8, 8, 8]"
    assert not client.search_logged_models(experiment_ids=["0"])
    version = client.get_model_version("logged", got["registered_model_version"])
    assert version.run_id == tracker.parent_id and logged.model_id in (version.model_id or version.source)


def test_the_runs_table_a_reviewer_needs(tmp_path):
    """Read back with MlflowClient as the UI reads it: a colour per trial and the best in gold, a note
    linking the parent, epochs_trained and the final metric, constants once (not as series), the
    dataset as an input, the winning configuration on the parent, links to the training view."""
    from mlflow import MlflowClient

    from trainables.results.read import Sweep, TrialRecord
    from trainables.spec.load import parse_spec
    from trainables.tracking.runs import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec(SPEC.format(name="table", limit=100, epochs=2, samples=2, uri=uri, retrain="false"))
    tracker = Tracker(spec, str(tmp_path / "sweep"))
    tracker.check()
    tracker.start()
    assert tracker.where()[1].endswith(f"/runs/{tracker.parent_id}?workflowType=machine_learning")
    records = []
    for tid, accs, lr in (("t1", (0.5, 0.6), 0.005), ("t2", (0.7, 0.9), 0.01)):
        config = {"lr": lr, "activation": "relu"}
        tracker.trial_started(tid, config)
        for epoch, acc in enumerate(accs, 1):
            tracker.trial_result(tid, config, {"epoch": epoch, "training_iteration": epoch, "val_acc": acc,
                                               "lr": lr, "trainable_params": 1234, "total_params": 1234,
                                               "precision": "fp32", "node_ip": "10.0.0.1"})
        tracker.trial_ended(tid, "completed")
        records.append(TrialRecord(trial_id=tid, status="completed", config=config,
                                   last={"val_acc": accs[-1], "training_iteration": 2}))
    assert tracker.finish(Sweep(spec=spec, path=str(tmp_path / "sweep"), trials=records), wall_seconds=1.0, wait=120)

    client = MlflowClient(tracking_uri=uri)
    runs = {r.data.tags.get("trial_id"): r for r in client.search_runs([tracker.experiment_id])}
    t1, t2, parent = runs["t1"], runs["t2"], runs[None]
    assert t1.data.tags["mlflow.runColor"] != t2.data.tags["mlflow.runColor"] == "#EDC948"  # the best in gold
    assert tracker.parent_id in t1.data.tags["mlflow.note.content"]
    assert t2.data.metrics["epochs_trained"] == 2 and t2.data.metrics["final_val_acc"] == 0.9
    assert t1.data.params["trainable_params"] == "1234" and "trainable_params" not in t1.data.metrics
    assert "lr" not in t1.data.metrics  # no lr schedule: a param, not a flat series
    assert len(client.get_metric_history(t1.info.run_id, "val_acc")) == 2
    assert t1.data.tags["precision"] == "fp32"
    (dataset,) = client.get_run(t1.info.run_id).inputs.dataset_inputs
    assert dataset.dataset.name.startswith("digits")
    assert parent.data.tags["best_config"] == '{"lr": 0.01, "activation": "relu"}'


def test_no_secret_reaches_mlflow_from_an_error_or_the_description(tmp_path):
    """A trial's error (a URL with a token in a traceback) went to its `error` tag and error.txt artifact as it
    was, and `description:` to the parent's note."""
    from mlflow import MlflowClient

    from trainables.spec.load import parse_spec
    from trainables.tracking.runs import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec(SPEC.format(name="leak", limit=100, epochs=2, samples=1, uri=uri, retrain="false"),
                      overrides=["description=weights from https://bob:hunter2@models.example/w.pt"])
    error = tmp_path / "error.txt"
    error.write_text("Traceback ...\nHTTPError: 401 for url: https://bob:hunter2@models.example/w.pt?token=SECRETTOK\n")
    tracker = Tracker(spec, str(tmp_path / "sweep"))
    tracker.start()
    tracker.trial_started("t1", {"lr": 0.01})
    tracker.trial_result("t1", {"lr": 0.01}, {"epoch": 1, "training_iteration": 1, "val_acc": 0.5})
    tracker.trial_ended("t1", "errored", error_file=str(error))
    tracker.finish(None, wall_seconds=1.0, wait=120)
    client = MlflowClient(tracking_uri=uri)
    seen = []
    for run in client.search_runs([tracker.experiment_id]):
        seen += [str(v) for v in run.data.tags.values()]
        for a in client.list_artifacts(run.info.run_id):
            if a.path.endswith(".txt"):
                seen.append(Path(client.download_artifacts(run.info.run_id, a.path, str(tmp_path / "dl"))).read_text())
    text = "\n".join(seen)
    assert "401 for url" in text and "weights from" in text  # both arrived ...
    assert "hunter2" not in text and "SECRETTOK" not in text  # ... without their secrets


def test_a_name_mlflow_refuses_is_logged_under_one_it_takes(tmp_path):
    """One metric or param name MLflow refuses (`acc@1`, `a//b`, over 250 characters) made the server refuse
    its whole batch: every metric of those epochs, val_acc too, was lost, and the trial's params."""
    import io

    from mlflow import MlflowClient

    from trainables.spec.load import parse_spec
    from trainables.tracking.runs import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec(SPEC.format(name="names", limit=100, epochs=2, samples=1, uri=uri, retrain="false"))
    said = io.StringIO()
    tracker = Tracker(spec, str(tmp_path / "sweep"), stream=said)
    tracker.start()
    config = {"lr": 0.01, "opt@momentum": 0.9, "opt#momentum": 0.8}  # two names, one key: made two
    tracker.trial_started("t1", config)
    for epoch in (1, 2):
        tracker.trial_result("t1", config, {"epoch": epoch, "training_iteration": epoch, "val_acc": 0.5 * epoch,
                                            "acc@1": 0.4, "a//b": 1.0, "val/acc": 0.3, "x" * 300: 2.0})
    tracker.trial_ended("t1", "completed")
    assert tracker.finish(None, wall_seconds=1.0, wait=120)
    client = MlflowClient(tracking_uri=uri)
    (run,) = [r for r in client.search_runs([tracker.experiment_id]) if r.data.tags.get("trial_id") == "t1"]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "val_acc")] == [0.5, 1.0]
    assert run.data.metrics["acc_1"] == 0.4 and run.data.metrics["a/b"] == 1.0 and run.data.metrics["val/acc"] == 0.3
    assert run.data.metrics["x" * 249] == 2.0
    assert run.data.params["opt_momentum"] == "0.9" and run.data.params["lr"] == "0.01"
    assert run.data.params["opt_momentum_2"] == "0.8"
    assert said.getvalue().count("'acc@1' is logged as 'acc_1'") == 1  # said once, not every epoch
    assert "val/acc" not in said.getvalue()  # a name MLflow takes is kept as it is


def test_resume_finds_its_parent_run_by_folder_whatever_the_folder_is_called(tmp_path):
    """Without the run file, --resume looks the parent up by its folder: a folder with a quote or a
    backslash in its path (o'brien) matched nothing, and a second parent run was started."""
    from trainables.results.layout import RUN_FILE
    from trainables.spec.load import parse_spec
    from trainables.tracking.runs import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec(SPEC.format(name="quoted", limit=100, epochs=1, samples=1, uri=uri, retrain="false"))
    for folder in ("o'brien", "back\\slash", "both'\""):
        path = tmp_path / folder / "quoted"
        path.mkdir(parents=True)
        first = Tracker(spec, str(path))
        first.start()
        assert first.finish(None, wall_seconds=1.0, wait=60)
        (path / RUN_FILE).unlink()
        again = Tracker(spec, str(path), resume=True)
        assert again.start() == first.parent_id, folder
        assert again.finish(None, wall_seconds=1.0, wait=60)


def test_a_user_trainables_own_epoch_is_not_the_mlflow_step(tmp_path):
    """A W&B script logging `epoch` with each batch (from 0) reported the same epoch several times: all but one
    report of each epoch, and every report of epoch 0, were dropped as already sent (2 of 12 points reached
    MLflow). A user's trainable is stepped by Ray's iteration, one step per report."""
    from mlflow import MlflowClient

    from trainables.spec.load import parse_spec
    from trainables.tracking.runs import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec(f"name: steps\ntrainable: tests.trainables_for_tests:reports_score\nmetric: score\nepochs: 3\n"
                      f"parameters: {{x: {{choice: [1, 2]}}}}\ntracking: {{uri: '{uri}'}}\n")
    tracker = Tracker(spec, str(tmp_path / "sweep"))
    tracker.start()
    tracker.trial_started("t1", {"x": 1})
    for i in range(1, 13):
        tracker.trial_result("t1", {"x": 1}, {"training_iteration": i, "epoch": (i - 1) // 4, "score": i / 12})
    tracker.trial_ended("t1", "completed")
    assert tracker.finish(None, wall_seconds=1.0, wait=120)
    client = MlflowClient(tracking_uri=uri)
    (run,) = [r for r in client.search_runs([tracker.experiment_id]) if r.data.tags.get("trial_id") == "t1"]
    history = client.get_metric_history(run.info.run_id, "score")
    assert sorted(m.step for m in history) == list(range(1, 13))
