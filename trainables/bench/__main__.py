"""python -m trainables.bench [--quick] [--gpu] [--only 1,2] [--out reports/bench]

The same as `tune bench`, without click: with --gpu it needs only torch and torchvision."""
from __future__ import annotations

import argparse
import sys

from trainables.bench import ALL, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainables.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few minutes: one order of figure 2, 5 seeds in figure 3")
    ap.add_argument("--gpu", action="store_true", help="only the GPU figures (5a-5d); needs only torch and torchvision")
    ap.add_argument("--only", default=",".join(ALL), help="figures to measure, e.g. 1,3 (default: all)")
    ap.add_argument("--out", default="reports/bench", help="where results.json, results.md and figures/ go")
    ap.add_argument("--work", default=None, help="keep the sweeps' folders and logs here (default: a temporary folder)")
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: every path, meaningless numbers
    a = ap.parse_args(argv)
    only = tuple(x.strip() for x in a.only.split(",") if x.strip())
    bad = [x for x in only if x not in ALL]
    if bad:
        ap.error(f"--only takes figure numbers among {','.join(ALL)}, got {','.join(bad)}")
    return run(out=a.out, quick=a.quick, tiny=a.tiny, only=only, gpu_only=a.gpu, work=a.work)


if __name__ == "__main__":
    sys.exit(main())
