"""final.retrain_best runs where the trials run: on a GPU worker of a cluster whose head has no GPU."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import write
from tests.test_cluster import cluster_env, local_cluster

pytestmark = pytest.mark.slow

SPEC = """\
name: gpu-retrain
dataset: {name: digits, limit: 200}
epochs: 1
parameters:
  model: cnn
  filters: [8, 8, 8, 8, 8]
  dense_units: 16
  lr: {choice: [0.003, 0.01]}
search: {algorithm: grid}
scheduler: {name: fifo}
resources: {cpu: 1, gpu: 1}
tracking: {enabled: false}
final: {retrain_best: true, report: false}
"""


def test_the_retrain_runs_on_the_gpu_worker_not_the_cpu_head(tmp_path):
    with local_cluster({"num_cpus": 1}, {"num_cpus": 1, "num_gpus": 1}) as cluster:
        (worker,) = cluster.worker_nodes
        proc = subprocess.run([sys.executable, "-m", "trainables", "run", str(write(tmp_path / "s.yaml", SPEC)),
                               "--storage", str(tmp_path / "shared")], cwd=tmp_path, env=cluster_env(cluster),
                              capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        record = json.loads((tmp_path / "shared" / "gpu-retrain" / "retrain.json").read_text())
        assert record["node_id"] == worker.node_id != cluster.head_node.node_id
        assert 0.0 <= record["test_acc"] <= 1.0 and "final: retrained best" in proc.stdout
