"""The package's shape (README "How it is built"): imports point down the stages, no cycle, small files.

Every import counts, function-local ones too: the graph is read from the source, not from
what happens to be imported at run time.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trainables"

# Each stage may import the stages of lower rank, and itself; never one of the same rank or above.
RANKS = {
    "trainables": 0, "trainables.errors": 0, "trainables.core": 0,
    "trainables.spec": 1,
    "trainables.search": 2, "trainables.results": 2,
    "trainables.tune": 3, "trainables.tracking": 3, "trainables.report": 3,
    "trainables.run": 4, "trainables.bench": 4,
    "trainables.cli": 5,
    "trainables.__main__": 6,
}
# Heavy or remote-facing libraries, and the stages allowed to import them.
LIBRARIES = {
    "ray": {"trainables.tune", "trainables.bench", "trainables.cli"},
    "mlflow": {"trainables.tracking"},
    "matplotlib": {"trainables.report", "trainables.bench"},
}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _stage(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _imports(module: str, path: Path) -> set[str]:
    """Every module this one imports, anywhere in its source (trainables modules resolved to files)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                pkg = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                # `from ray.train import _internal` reaches into ray as surely as `import ray.train._internal`
                out.add(sub if sub in MODULES or not base.startswith("trainables") else base)
    return out


GRAPH = {m: {i for i in _imports(m, p) if i in MODULES and i != m} for m, p in MODULES.items()}


def test_imports_point_down_the_stages():
    wrong = []
    for m, targets in GRAPH.items():
        for t in targets:
            if _stage(t) != _stage(m) and RANKS[_stage(t)] >= RANKS[_stage(m)]:
                wrong.append(f"{m} imports {t}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(sorted(wrong))


def test_every_module_belongs_to_a_stage():
    assert {_stage(m) for m in MODULES} <= set(RANKS)


def test_no_import_cycle():
    done: set[str] = set()
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        if m in stack:
            cycles.append(" -> ".join(stack[stack.index(m):] + [m]))
            return
        if m in done:
            return
        for t in sorted(GRAPH[m]):
            visit(t, stack + [m])
        done.add(m)

    for m in sorted(GRAPH):
        visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_heavy_libraries_stay_in_their_stages():
    wrong = []
    for m, path in MODULES.items():
        for i in _imports(m, path):
            top = i.split(".")[0]
            if top in LIBRARIES and _stage(m) not in LIBRARIES[top]:
                wrong.append(f"{m} imports {i}")
    assert not wrong, "\n".join(sorted(wrong))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_small_files_that_say_what_they_hold(module):
    path = MODULES[module]
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path} has {len(text.splitlines())} lines (at most {MAX_LINES})"
    doc = ast.get_docstring(ast.parse(text))
    assert doc and doc.strip(), f"{path} opens with no docstring saying what it holds"


def test_the_ray_internals_we_use_are_where_we_look_for_them():
    """tune/_ray_private.py is the only user of Ray's internals: this fails when an upgrade moves one."""
    from ray._private.utils import get_ray_address_file, read_ray_address  # noqa: F401
    from ray.train._internal.storage import _exists_at_fs_path  # noqa: F401
    from ray.train.v2._internal.constants import V2_ENABLED_ENV_VAR, is_v2_enabled  # noqa: F401
    from ray.tune import Tuner
    from ray.tune.experiment import Trial

    assert callable(is_v2_enabled) and isinstance(V2_ENABLED_ENV_VAR, str)
    trial = _source(Trial.__module__)
    assert "def invalidate_json_state" in trial and "self.run_metadata" in trial
    metadata = _source("ray.tune.trainable.metadata")
    assert "def invalidate_cache" in metadata and "checkpoint_manager" in metadata
    assert "_local_tuner" in Tuner.__init__.__code__.co_names
    assert "_run_config" in _source("ray.tune.impl.tuner_internal")
    optuna_search = _source("ray.tune.search.optuna.optuna_search")
    assert "self._ot_study" in optuna_search and "self._ot_trials" in optuna_search
    asha = _source("ray.tune.schedulers.async_hyperband")
    assert "self._brackets" in asha and "self._rungs" in asha and "recorded[trial.trial_id]" in asha
    manager = _source("ray.train._internal.checkpoint_manager")
    assert "_checkpoint_results" in manager and "_latest_checkpoint_result" in manager


def _source(module: str) -> str:
    return Path(importlib.import_module(module).__file__).read_text()


def test_no_other_module_reaches_into_ray_internals():
    wrong = []
    for m, path in MODULES.items():
        if m == "trainables.tune._ray_private":
            continue
        for i in _imports(m, path):
            if i.startswith("ray.") and any(part.startswith("_") for part in i.split(".")):
                wrong.append(f"{m} imports {i}")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_driver_never_imports_torch(tmp_path):
    """`tune run`'s own process validates, plans, searches, tracks and reports without torch (~500 MB and
    1.5 s): the model registry's entries are torch-free (core/models/catalog.py), core.data imports its
    loaders on first use, and trials and the retrain build models in their own processes. The whole
    run is checked in tests/test_tracking.py; this is the quick check of every driver module."""
    code = f"""
import sys, tempfile
import trainables.cli, trainables.run, trainables.report.write, trainables.tracking.runs, trainables.tracking.models
import trainables.tune.retrain, trainables.tune.data_parallel, trainables.tune.study
from trainables.spec.load import load_spec
from trainables.spec.preflight import preflight
from trainables.tune.tuner import build_tuner
from PIL import Image
for c in ("cat", "dog"):
    for i in range(6):
        folder = __import__("pathlib").Path({str(tmp_path)!r}, "images", "train", c)
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(folder / f"{{i}}.jpg")
folder = ["dataset.name=imagefolder", "dataset.root={str(tmp_path / 'images')}", "dataset.image_size=32"]
spaces = {str(PACKAGE.parent / "search_spaces")!r}
for name, overrides in (("quickstart", []), ("quickstart", ["resources.workers=2", "scheduler.name=fifo"]),
                        ("quickstart", folder), ("seed004_resnet50_freeze", folder[1:])):  # ImageNet weights
    spec = preflight(load_spec(f"{{spaces}}/{{name}}.yaml", overrides))
    build_tuner(spec, storage=tempfile.mkdtemp(dir={str(tmp_path)!r}))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")))
"""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-2000:]
