"""Figures of `tune bench`: one JSON line each on stdout, and reports/bench/ (results.json,
results.md, figures/*.png). Needs only the standard library (matplotlib for the plots, if present)."""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One measured figure with its target. `met` is None when there is no pass/fail (skipped)."""

    id: str  # "1", "2a", ...
    name: str
    value: float | None
    unit: str
    target: str  # e.g. ">= 0.95"
    met: bool | None
    device: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why the figure was not measured here

    def line(self) -> str:
        """The JSON line printed for this figure."""
        return json.dumps(_finite(asdict(self)), sort_keys=False)


def check(value: float | None, op: str, threshold: float) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value >= threshold if op == ">=" else value <= threshold


def skipped(id: str, name: str, unit: str, target: str, why: str, device: str = "") -> Figure:
    return Figure(id, name, None, unit, target, None, device=device, skipped=why)


def _finite(obj: Any) -> Any:
    """JSON without NaN/inf (written as null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().split()
        info["memory_gb"] = round(int(mem[mem.index("MemTotal:") + 1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("torch", "torchvision", "ray", "optuna", "mlflow"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = None
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpus"] = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch / no driver: a CPU machine
        pass
    return info


def describe_machine(m: dict[str, Any]) -> str:
    gpu = f", {m['gpus']}x {m['gpu']}" if m.get("gpu") else ", no GPU"
    load = m.get("load_average")
    return (f"{m.get('cpu', 'unknown CPU')} ({m.get('cpus_usable')} cores usable){gpu}, "
            f"{m.get('memory_gb', '?')} GB RAM; "
            f"torch {m.get('torch')}, ray {m.get('ray')}" + (f"; load average {load[0]:.2f} at start" if load else ""))


class Recorder:
    """Prints each figure's JSON line as it is measured; writes results.json, results.md and plots."""

    def __init__(self, out: str | os.PathLike, *, quick: bool, stream=None):
        self.out, self.quick = Path(out), quick
        self.stream = stream or sys.stdout
        self.figures: list[Figure] = []
        self.machine = machine()
        self.started = time.time()

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        print(fig.line(), file=self.stream, flush=True)
        return fig

    def write(self, *, merge: bool = False) -> Path:
        """results.json (merged with an earlier file's other figures when `merge`, e.g. GPU figures
        measured on another machine), results.md and figures/*.png."""
        self.out.mkdir(parents=True, exist_ok=True)
        end = machine()
        run = {"machine": self.machine, "load_average_end": end.get("load_average"), "quick": self.quick,
               "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
               "seconds": round(time.time() - self.started, 1)}
        figures = [dict(asdict(f), run=0) for f in self.figures]
        runs = [run]
        path = self.out / "results.json"
        if merge and path.is_file():
            try:
                old = json.loads(path.read_text())
                # An earlier measurement stays unless this run measured the figure: a CPU
                # machine's "skipped" does not replace GPU figures recorded on a GPU machine.
                measured = {f["id"]: f for f in old.get("figures", []) if not f.get("skipped")}
                figures = [f for f in figures if not (f.get("skipped") and f["met"] is None and f["id"] in measured)]
                mine = {f["id"] for f in figures}
                kept = [f for f in old.get("figures", []) if f["id"] not in mine]
                offset = len(runs)
                runs += old.get("runs", [])
                figures += [dict(f, run=f.get("run", 0) + offset) for f in kept]
            except (OSError, ValueError, KeyError):
                pass
        figures.sort(key=lambda f: (_order(f["id"])))
        runs_used = sorted({f["run"] for f in figures})
        remap = {r: i for i, r in enumerate(runs_used)}
        data = {"runs": [runs[r] for r in runs_used], "figures": [dict(f, run=remap[f["run"]]) for f in figures]}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_finite(data), indent=2))
        tmp.replace(path)
        (self.out / "results.md").write_text(markdown(data))
        plots(data, self.out / "figures", stream=self.stream)
        return path


def _order(fid: str) -> tuple:
    num = "".join(c for c in fid if c.isdigit())
    return (int(num or 0), fid)


def _fmt(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    if unit in ("images/s",):
        return f"{v:,.0f} {unit}"
    if unit == "MB":
        return f"{v:,.0f} MB"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "x":
        return f"{v:.2f}x"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def markdown(data: dict[str, Any]) -> str:
    """The table of every figure with its target, and the machines they were measured on."""
    lines = ["| # | figure | measured | target | met |", "|---|---|---|---|---|"]
    for f in data["figures"]:
        if f.get("skipped"):
            measured, met = f"skipped: {f['skipped']}", "-"
        else:
            measured = _fmt(f["value"], f["unit"]) + (
                f" ({f['details']['summary']})" if f["details"].get("summary") else ""
            )
            met = {True: "yes", False: "**no**", None: "-"}[f["met"]]
        where = f" [{f['device']}]" if f.get("device") else ""
        lines.append(f"| {f['id']} | {f['name']}{where} | {measured} | {f['target']} | {met} |")
    lines.append("")
    for i, run in enumerate(data["runs"]):
        m = run["machine"]
        end = run.get("load_average_end")
        lines.append(f"Run {i}{' (--quick)' if run.get('quick') else ''}, {run['started']}, {run['seconds']:.0f} s: "
                     f"{describe_machine(m)}" + (f", {end[0]:.2f} at the end" if end else "") + ".")
    return "\n".join(lines) + "\n"


def plots(data: dict[str, Any], folder: Path, stream=None) -> list[Path]:
    """One bar chart per figure group that has numbers to show (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed; no plots written", file=stream or sys.stderr)
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    by_id = {f["id"]: f for f in data["figures"] if not f.get("skipped")}

    def save(fig, name):
        fig.tight_layout()
        p = folder / name
        fig.savefig(p, dpi=100)
        plt.close(fig)
        written.append(p)

    if "1" in by_id:
        d = by_id["1"]["details"]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.bar(["bare loop", "trainables fit"], [d["bare_images_per_s"], d["fit_images_per_s"]], color=["#999", "#2a7"])
        ax.set_ylabel("training images/s")
        ax.set_title(f"1. training core vs bare loop: {by_id['1']['value']:.3f}")
        save(fig, "1_core.png")
    if "2a" in by_id:
        d = by_id["2a"]["details"]
        labels, values = ["ideal"], [d["ideal_seconds"]]
        for key, label in (("fit_seconds", "tune run:\nsweep"), ("command_seconds", "tune run:\ncommand")):
            if key in d:
                labels.append(label)
                values.append(d[key])
        b = by_id.get("2b", {}).get("details", {})
        for key, label in (("bare_fit_seconds", "bare Ray:\nsweep"), ("bare_command_seconds", "bare Ray:\ncommand"),
                           ("bare_ideal_seconds", "bare Ray:\nideal")):
            if key in b:
                labels.append(label)
                values.append(b[key])
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar(labels, values, color=["#999"] + ["#2a7"] * 2 + ["#c63"] * 3)
        ax.set_ylabel("seconds")
        ax.set_title("2. sweep of 16 trials, 2 at a time")
        save(fig, "2_overhead.png")
    if "3" in by_id:
        d = by_id["3"]["details"]
        seeds = d["seeds"]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ratios = [s["ratio"] if s["ratio"] is not None else float("nan") for s in seeds]
        ax.bar([str(s["seed"]) for s in seeds], [r if math.isfinite(r) else 0 for r in ratios], color="#27a")
        for i, r in enumerate(ratios):
            if not math.isfinite(r):
                ax.text(i, 0.02, "not\nreached", ha="center", fontsize=7)
        ax.axhline(0.4, color="k", ls="--", lw=1)
        ax.set_xlabel("seed")
        ax.set_ylabel("trial-epochs / random+FIFO's")
        ax.set_title("3. TPE+ASHA trial-epochs to random+FIFO's best")
        save(fig, "3_search.png")
    mem = [(f["name"], f["value"]) for i, f in by_id.items() if i.startswith("4")]
    if mem:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.bar([n.split(":")[-1].strip() for n, _ in mem], [v for _, v in mem], color="#a72")
        ax.axhline(1000, color="k", ls="--", lw=1)
        ax.set_ylabel("peak RSS (MB)")
        ax.set_title("4. memory, quickstart")
        save(fig, "4_memory.png")
    gpu = [f for i, f in by_id.items() if i.startswith("5")]
    if gpu:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.bar([f["id"] for f in gpu], [f["value"] / (2470 if f["unit"] == "images/s" else 1) for f in gpu],
               color="#72a")
        ax.set_ylabel("speed-up (5c: / 2,470 images/s)")
        ax.set_title("5. GPU")
        save(fig, "5_gpu.png")
    return written
