"""The cluster files, the rules for joining a cluster, and real multi-node Ray on one machine:
a two-node `ray.cluster_utils.Cluster` (separate raylets, one GCS) that sweeps run on, lose a
node under, and lose their driver under; and `ray job submit` through the real Jobs API."""
from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, free_port, recorded_finished, write

CLUSTER_DIR = ROOT / "cluster"
RAY_SCHEMA = Path(__import__("ray.autoscaler", fromlist=["x"]).__file__).parent / "ray-schema.json"


# ---- the files in cluster/ ------------------------------------------------------------------

def _launcher_configs():
    return [p for p in sorted(CLUSTER_DIR.glob("*.yaml")) if yaml.safe_load(p.read_text()).get("kind") != "RayJob"]


@pytest.mark.parametrize("path", _launcher_configs(), ids=lambda p: p.name)
def test_cluster_launcher_files_are_valid_for_rays_schema(path):
    """As `ray up` checks them: the schema shipped in the installed ray wheel, on the file as
    written and once filled out with the provider's defaults (ray.autoscaler's own validator)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(path.read_text())
    try:
        import jsonschema
    except ImportError:  # validate_config needs it as well: the way `ray up` fails without it
        pytest.skip("jsonschema is not installed (ray up needs it too)")
    jsonschema.validate(raw, json.loads(RAY_SCHEMA.read_text()))
    validate_config(prepare_config(copy.deepcopy(raw)))

    assert "pip install -e ~/trainables" in raw["setup_commands"]  # installs this project
    assert raw["file_mounts"]["~/trainables"] == "."
    if raw["provider"]["type"] == "local":
        assert raw["provider"]["head_ip"] and raw["provider"]["worker_ips"]
        return
    types = raw["available_node_types"]
    head = types[raw["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0  # a CPU head
    workers = [t for name, t in types.items() if name != raw["head_node_type"]]
    assert workers and all(t["resources"]["GPU"] >= 1 and t["max_workers"] >= t["min_workers"] >= 0 for t in workers)
    spot = [t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
            or {"preemptible": True} in t["node_config"].get("scheduling", []) for t in workers]
    assert all(spot)


def test_kuberay_rayjob_runs_tune_run_on_gpu_workers():
    job = yaml.safe_load((CLUSTER_DIR / "kuberay-rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["entrypoint"].startswith("tune run ")
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    (gpu,) = cluster["workerGroupSpecs"]
    assert gpu["maxReplicas"] >= gpu["minReplicas"] >= 0
    assert int(gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert env["TRAINABLES_CLUSTER"] == "1" and env["MLFLOW_TRACKING_URI"].startswith("http")
    # One Ray version across the cluster files and the image.
    versions = {cluster["rayVersion"]}
    versions |= {c.split("==")[1].rstrip('"') for p in _launcher_configs()
                 for c in yaml.safe_load(p.read_text())["setup_commands"] if "ray[" in c}
    versions.add((CLUSTER_DIR / "Dockerfile").read_text().split("rayproject/ray:")[1].split("-")[0])
    assert len(versions) == 1, versions


def test_cluster_sweep_script_builds_the_tune_run_command(monkeypatch):
    sys.path.insert(0, str(CLUSTER_DIR))
    try:
        import sweep as cluster_sweep
    finally:
        sys.path.remove(str(CLUSTER_DIR))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("TRAINABLES_HOME", str(ROOT))
    monkeypatch.chdir(ROOT.parent)  # as on the head node: the checkout is not the working folder
    args = cluster_sweep.tune_args(["search_spaces/quickstart.yaml", "-o", "epochs=2", "--storage", "s3://b/p",
                                    "--resume"])
    assert args == ["run", str(ROOT / "search_spaces/quickstart.yaml"), "-o", "epochs=2", "--storage", "s3://b/p",
                    "--resume", "--address", "auto"]
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert "--address" not in cluster_sweep.tune_args(["x.yaml"])
    assert cluster_sweep.tune_args(["x.yaml", "--address=h:1"])[-1] == "--address=h:1"


# ---- check_cluster: storage and tracking on more than one node ------------------------------

def _spec(tmp_path, tracking="tracking: {enabled: false}"):
    from trainables.spec.load import load_spec

    return load_spec(write(tmp_path / "s.yaml", f"name: s\nparameters: {{model: cnn}}\n{tracking}\n"))


@pytest.fixture
def two_nodes(monkeypatch):
    from trainables.tune import cluster as sweep

    for var in ("TRAINABLES_CLUSTER", "TRAINABLES_SHARED_STORAGE", "TRAINABLES_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    nodes = {"n": 2}
    monkeypatch.setattr(
        sweep, "on_cluster", lambda: max(nodes["n"], 2) if os.environ.get("TRAINABLES_CLUSTER") == "1" else nodes["n"]
    )
    return nodes


def test_check_cluster_storage_rule(tmp_path, monkeypatch, two_nodes):
    from trainables.errors import SpecError
    from trainables.tune.cluster import check_cluster

    spec = _spec(tmp_path)
    with pytest.raises(SpecError, match=r"--storage: .*2 nodes.*local to this machine.*s3://"):
        check_cluster(spec, None)  # the default ./results
    with pytest.raises(SpecError, match="local to this machine"):
        check_cluster(spec, str(tmp_path / "mine"))  # a local disk path, not declared
    for shared in ("s3://bucket/sweeps", "gs://bucket/sweeps", "abfs://c@a.dfs.core.windows.net/p"):
        check_cluster(spec, shared)
    with pytest.raises(SpecError):
        check_cluster(spec, "file:///tmp/sweeps")
    monkeypatch.setenv("TRAINABLES_SHARED_STORAGE", "1")
    check_cluster(spec, str(tmp_path / "nfs"))  # declared, with an explicit path
    with pytest.raises(SpecError):
        check_cluster(spec, None)  # the implicit default is never taken as shared
    monkeypatch.setenv("TRAINABLES_STORAGE", str(tmp_path / "nfs"))
    check_cluster(spec, None)  # explicit through the environment
    two_nodes["n"] = 1
    monkeypatch.delenv("TRAINABLES_SHARED_STORAGE")
    check_cluster(spec, None)  # one node: anything goes
    monkeypatch.setenv("TRAINABLES_CLUSTER", "1")  # ray submit / the cluster files: a cluster even with its head alone
    with pytest.raises(SpecError, match=r"TRAINABLES_CLUSTER=1"):
        check_cluster(spec, None)


def test_check_cluster_wants_an_mlflow_server(tmp_path, monkeypatch, two_nodes):
    from trainables.errors import SpecError
    from trainables.tune.cluster import check_cluster

    for tracking in ("tracking: {}", "tracking: {uri: 'sqlite:///mlflow.db'}", "tracking: {uri: ./mlruns}",
                     "tracking: {uri: 'file:///tmp/mlruns'}"):
        with pytest.raises(SpecError, match=r"tracking.uri: .*tracking server"):
            check_cluster(_spec(tmp_path, tracking), "s3://b/p")
    check_cluster(_spec(tmp_path, "tracking: {uri: 'http://mlflow:5000'}"), "s3://b/p")
    check_cluster(_spec(tmp_path, "tracking: {enabled: false}"), "s3://b/p")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    check_cluster(_spec(tmp_path, "tracking: {}"), "s3://b/p")


def test_network_filesystems_count_as_shared(tmp_path, monkeypatch):
    from trainables.tune import cluster as sweep

    monkeypatch.delenv("TRAINABLES_SHARED_STORAGE", raising=False)
    monkeypatch.setattr(sweep, "_filesystem_type", lambda path: "nfs4")
    assert sweep.storage_is_shared(str(tmp_path))
    monkeypatch.setattr(sweep, "_filesystem_type", lambda path: "ext4")
    assert not sweep.storage_is_shared(str(tmp_path))
    monkeypatch.undo()  # the real one reads /proc/mounts, from the nearest folder that exists
    assert sweep._filesystem_type(str(tmp_path / "not" / "yet")) == sweep._filesystem_type(str(tmp_path))


def test_a_head_is_given_the_token_ray_init_would_make(tmp_path, monkeypatch):
    """`ray start --head` under token auth (Ray's default) makes no token: on a machine that never ran Ray,
    `tune bench` (and this suite) could not start their head."""
    from trainables.tune.cluster import ensure_token

    for key in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    ensure_token()
    token = tmp_path / ".ray" / "auth_token"
    made = token.read_text()
    assert len(made) >= 16
    ensure_token()  # one that exists is kept: a running cluster's clients hold it
    assert token.read_text() == made
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    token.unlink()
    ensure_token()
    assert not token.exists()


# ---- real multi-node Ray on this machine ------------------------------------------------------

ADDRESS_FILE = Path("/tmp/ray/ray_current_cluster")


def token_auth() -> None:
    """Token auth, Ray's default for local clusters, in this process and the nodes it starts.
    Ray caches the mode at import: refresh it as Ray does when it turns token auth on."""
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    from trainables.tune.cluster import ensure_token

    if os.environ.get("RAY_AUTH_MODE", "token") == "token":
        ensure_token()  # `ray start` makes none; on a machine that never ran Ray there is none
        _enable_token_auth()


@contextmanager
def local_cluster(*nodes: dict):
    """A Ray cluster of separate nodes (raylets) on this machine; nodes[0] is the head. Other Ray
    users of this machine are left alone: ray.init() without an address keeps finding theirs."""
    import ray
    from ray.cluster_utils import Cluster

    token_auth()
    if ray.is_initialized():
        ray.shutdown()
    saved = ADDRESS_FILE.read_text() if ADDRESS_FILE.exists() else None
    cluster = Cluster(initialize_head=True, head_node_args={"include_dashboard": False, **nodes[0]})
    try:
        for node in nodes[1:]:
            cluster.add_node(**node)
        cluster.wait_for_nodes()
    finally:
        if saved is not None:  # Cluster() points `ray.init()` at itself: point it back
            ADDRESS_FILE.write_text(saved)
    try:
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def node_of(cluster, pid: int) -> str | None:
    """The node (id) whose raylet started worker process `pid` (while it lives)."""
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
    for node in [cluster.head_node, *cluster.worker_nodes]:
        if node.all_processes["raylet"][0].process.pid == ppid:
            return node.node_id
    return None


@pytest.fixture(scope="module")
def two_node_cluster():
    """A head and a worker node, one CPU each: two one-CPU trials run on different nodes."""
    with local_cluster({"num_cpus": 1}, {"num_cpus": 1}) as cluster:
        yield cluster


def cluster_env(cluster, **extra) -> dict:
    return {**os.environ, "RAY_ADDRESS": cluster.address, "TRAINABLES_SHARED_STORAGE": "1", **extra}


TINY = """\
name: {name}
dataset: {{name: digits, limit: 300}}
epochs: {epochs}
max_failures: 2
parameters:
  model: cnn
  filters: [8, 8, 8, 8, 8]
  dense_units: 32
  lr: {{loguniform: [1.0e-3, 1.0e-2]}}
search: {{algorithm: random, num_samples: {samples}, seed: 0}}
scheduler: {{name: fifo}}
resources: {{cpu: 1}}
tracking: {{enabled: false}}
final: {{report: false}}
"""


def tiny(tmp_path, name, *, epochs=2, samples=2):
    return write(tmp_path / f"{name}.yaml", TINY.format(name=name, epochs=epochs, samples=samples))


def run_tune(*args, env, cwd, timeout=85) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainables", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_local_storage_is_refused_before_any_trial_on_two_nodes(two_node_cluster, tmp_path):
    spec = tiny(tmp_path, "refused")
    env = {k: v for k, v in cluster_env(two_node_cluster).items() if k != "TRAINABLES_SHARED_STORAGE"}
    proc = run_tune("run", spec, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--storage" in proc.stderr and "2 nodes" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("results/refused/trial_*"))  # no trial started


@pytest.mark.slow
def test_cluster_sweep_py_completes_the_quickstart_on_two_nodes(two_node_cluster, tmp_path):
    """What `ray submit CLUSTER.yaml cluster/sweep.py -- SPEC.yaml` runs on the head node."""
    from ray.tune import ExperimentAnalysis

    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, str(CLUSTER_DIR / "sweep.py"), "search_spaces/quickstart.yaml",
         "-o", "search.num_samples=4", "-o", "epochs=2", "-o", "dataset.limit=300",
         "-o", "parameters.filters=[8,8,8,8,8]", "-o", "tracking.enabled=false", "-o", "final.report=false",
         "-o", "final.retrain_best=false", "--storage", str(tmp_path / "shared")],
        cwd=tmp_path, env=cluster_env(two_node_cluster, TRAINABLES_HOME=str(ROOT)), capture_output=True, text=True,
        timeout=85)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = ExperimentAnalysis(str(tmp_path / "shared/quickstart")).trials
    assert len(trials) == 4 and all(
        t.status == "TERMINATED" and t.last_result.get("val_acc") is not None for t in trials
    )
    print(f"quickstart (4 trials x 2 epochs) through cluster/sweep.py on 2 nodes: {time.time() - t0:.0f}s")


_RECORDS: dict[str, tuple] = {}  # Recorder key -> (cluster, results, lock): the Tuner pickles its callbacks


def _recorder_base():
    from ray.tune import Callback

    return Callback


class Recorder(_recorder_base()):
    """A Tune callback on the driver: every result, with the node the trial's process is on."""

    def __init__(self, cluster):
        self.key = f"{id(self)}"
        _RECORDS[self.key] = (cluster, [], threading.Lock())

    def on_trial_result(self, iteration, trials, trial, result, **info):
        cluster, results, lock = _RECORDS[self.key]
        node = node_of(cluster, result["pid"])
        with lock:
            results.append((trial.trial_id, result["training_iteration"], node))

    def snapshot(self):
        _, results, lock = _RECORDS[self.key]
        with lock:
            return list(results)


@pytest.mark.slow
def test_trials_spread_over_nodes_and_survive_a_worker_node_dying(two_node_cluster, tmp_path):
    """Two one-CPU trials on two one-CPU nodes: one runs on each. The worker node is killed
    while its trial trains; with max_failures the trial resumes from its last checkpoint on
    the node that replaces it, and both trials complete: none lost, none started over."""
    import ray

    from trainables.spec.load import load_spec
    from trainables.tune.tuner import build_tuner

    cluster = two_node_cluster
    epochs = 40
    spec = load_spec(tiny(tmp_path, "nodekill", epochs=epochs), ["performance.checkpoint_every=1"])
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        rec = Recorder(cluster)
        tuner = build_tuner(spec, storage=str(tmp_path / "shared"), callbacks=[rec])
        out = {}
        fit = threading.Thread(target=lambda: out.setdefault("grid", tuner.fit()), daemon=True)
        fit.start()
        (victim,) = cluster.worker_nodes
        deadline = time.time() + 60
        while time.time() < deadline:  # a trial on each node, the worker node's a few checkpoints in
            on_victim = {t: i for t, i, n in rec.snapshot() if n == victim.node_id}
            on_head = {t for t, i, n in rec.snapshot() if n == cluster.head_node.node_id}
            if on_victim and max(on_victim.values()) >= 3 and on_head:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"no trial on each node, at epoch 3 on the worker node: {rec.snapshot()[-5:]}")
        (killed,) = set(on_victim)
        nodes_before = {n for _, _, n in rec.snapshot()}
        cluster.remove_node(victim, allow_graceful=False)  # the machine dies: no goodbye
        cluster.add_node(num_cpus=1)  # the autoscaler's replacement
        fit.join(timeout=75)
        assert not fit.is_alive(), f"the sweep did not finish: {rec.snapshot()[-5:]}"
    finally:
        ray.shutdown()
    from ray.tune import ExperimentAnalysis

    grid = out["grid"]
    assert nodes_before >= {cluster.head_node.node_id, victim.node_id}  # spread over both nodes
    assert grid.num_errors == 0 and len(grid) == 2
    assert all(r.metrics["training_iteration"] == epochs for r in grid)
    failures = {t.trial_id: t.num_failures for t in ExperimentAnalysis(str(tmp_path / "shared/nodekill")).trials}
    assert failures[killed] >= 1, failures
    seen = [i for t, i, _ in rec.snapshot() if t == killed]
    assert seen.count(1) == 1 and set(seen) == set(range(1, epochs + 1)), f"trial {killed} started over: {seen}"
    assert {n for t, _, n in rec.snapshot() if t == killed} - {victim.node_id, None}  # resumed elsewhere
    print(f"trial {killed}: node killed after epoch {on_victim[killed]}, resumed elsewhere from its checkpoint, "
          f"{failures[killed]} failure(s), all {epochs} epochs reported once")


@pytest.mark.slow
def test_driver_sigkill_then_resume_on_the_cluster(two_node_cluster, tmp_path):
    """`tune run --address` dies by SIGKILL mid-sweep; the cluster lives on. `tune run --resume`
    ends with exactly num_samples trials, every one complete, the finished ones not re-run."""
    from ray.tune import ExperimentAnalysis

    epochs, samples = 8, 6
    spec = tiny(tmp_path, "killed", epochs=epochs, samples=samples)
    env = {**cluster_env(two_node_cluster), "TUNE_GLOBAL_CHECKPOINT_S": "0.5"}  # the saved state close behind
    exp = tmp_path / "shared/killed"
    driver = subprocess.Popen([sys.executable, "-m", "trainables", "run", str(spec),
                               "--storage", str(tmp_path / "shared")],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and driver.poll() is None and not recorded_finished(exp):
        time.sleep(0.05)
    assert driver.poll() is None, "the sweep ended before it could be killed: " + driver.stdout.read()
    os.killpg(driver.pid, signal.SIGKILL)  # once the saved state has a finished trial
    driver.wait()
    finished = {f"trial_{t}": (exp / f"trial_{t}" / "result.json").read_text() for t in recorded_finished(exp)}
    assert 1 <= len(finished) < samples

    proc = run_tune("run", spec, "--storage", tmp_path / "shared", "--resume", env=env, cwd=tmp_path, timeout=80)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = ExperimentAnalysis(str(exp)).trials
    assert len(trials) == samples, (proc.stdout[-3000:], sorted(p.name for p in exp.iterdir()))
    assert all(t.status == "TERMINATED" and t.last_result["training_iteration"] == epochs for t in trials), \
        [(t.trial_id, t.status, t.last_result.get("training_iteration"), t.num_failures) for t in trials]
    for name, results in finished.items():
        assert (exp / name / "result.json").read_text() == results, f"{name} was trained again"
    print(f"SIGKILL with {len(finished)} of {samples} trials finished; --resume ended with {len(trials)} trials, "
          f"all {epochs} epochs, the finished ones untouched")


# ---- ray job submit through the Jobs API ----------------------------------------------------

def _dashboard_missing() -> str | None:
    """Why the Ray dashboard (which serves the Jobs API) cannot start here, or None."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401 - what `ray start` checks before starting it
    except ImportError as e:
        return (f"the Ray Jobs API is served by the Ray dashboard, which cannot start here: {e} "
                f"(install ray[default] to run this test)")
    return None


@pytest.mark.slow
@pytest.mark.skipif(_dashboard_missing() is not None, reason=str(_dashboard_missing()))
def test_ray_job_submit_runs_tune_run_through_the_jobs_api(tmp_path):
    port, dash = free_port(), free_port()
    token_auth()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    saved = ADDRESS_FILE.read_text() if ADDRESS_FILE.exists() else None
    log = open(tmp_path / "head.log", "w")
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=true", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--disable-usage-stats",
         # the job agent's own HTTP port: Ray's default (52365) is taken by the session's head
         f"--dashboard-agent-listen-port={free_port()}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    t0 = time.time()
    try:
        deadline = time.time() + 45
        while True:  # the Jobs API answers once the dashboard is up
            try:
                socket.create_connection(("127.0.0.1", dash), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.time() < deadline, (tmp_path / "head.log").read_text()[-3000:]
                time.sleep(0.3)
        if saved is not None:
            ADDRESS_FILE.write_text(saved)
        up = time.time()
        storage = tmp_path / "results"
        submit = ["ray", "job", "submit", f"--address=http://127.0.0.1:{dash}", "--working-dir", str(ROOT), "--",
                  "tune", "run", "search_spaces/quickstart.yaml", "-o", "search.num_samples=2", "-o", "epochs=2",
                  "-o", "dataset.limit=300", "-o", "parameters.filters=[8,8,8,8,8]", "-o", "tracking.enabled=false",
                  "-o", "final.report=false", "-o", "final.retrain_best=false", "--storage", str(storage)]
        while True:  # the dashboard answers before its job agent has registered: no job is made until then
            proc = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=80, cwd=tmp_path)
            if "No available agent" not in proc.stderr + proc.stdout or time.time() > up + 60:
                break
            time.sleep(1)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        assert "succeeded" in proc.stdout and "best trials by val_acc" in proc.stdout
        assert len(list((storage / "quickstart").glob("trial_*/result.json"))) == 2
        print(f"ray start --head with the dashboard: {up - t0:.0f}s; "
              f"ray job submit ... -- tune run: {time.time() - up:.0f}s")
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` takes its processes down with it
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # and whatever of them still lingers
        except ProcessLookupError:
            pass
        if saved is not None:
            ADDRESS_FILE.write_text(saved)
