"""Run a sweep on the Ray cluster this machine belongs to: what `ray submit` runs on the head node.

    ray submit cluster/aws-gpu.yaml cluster/sweep.py -- SPEC.yaml [-o KEY=VALUE ...] [--storage URI] [--resume]

is `tune run SPEC.yaml --address auto ...` on the head node: the same code path, options and
exit codes (0 finished, 1 every trial failed, 2 bad input). `ray submit` copies this file to
the head's home folder and runs it there; a relative SPEC.yaml that is not found from there is
looked up in the checkout the cluster files mount on every node (~/trainables, or
$TRAINABLES_HOME). The cluster is joined at $RAY_ADDRESS if set, else with address auto.

Run here, a sweep counts as a cluster sweep even while the autoscaler has only started the
head (TRAINABLES_CLUSTER=1): trial storage must be shared (--storage s3://..., gs://... or a
shared filesystem path) and MLflow a tracking server, or it stops before any trial starts.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def tune_args(argv: list[str]) -> list[str]:
    """`tune` arguments for this script's: `run SPEC.yaml ...`, joining the cluster."""
    if not argv or argv[0] in ("-h", "--help"):
        return ["run", "--help"]
    spec, rest = argv[0], list(argv[1:])
    if not Path(spec).expanduser().exists():
        checkout = Path(os.environ.get("TRAINABLES_HOME", "~/trainables")).expanduser()
        if (checkout / spec).exists():
            spec = str(checkout / spec)
    if not os.environ.get("RAY_ADDRESS") and not any(a == "--address" or a.startswith("--address=") for a in rest):
        rest += ["--address", "auto"]
    return ["run", spec, *rest]


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TRAINABLES_CLUSTER", "1")
    from trainables.cli import main as tune

    tune(tune_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
