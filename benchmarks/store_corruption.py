"""Long runs of the store corruption property test (``tests/test_store_corruption.py``), seeded.

Each trial builds a real store in a temporary directory, closes it, applies one corruption, runs
``gwproactor store verify`` and reopens it, and checks: open never raises, every intact pending
event survives, ``read`` gives exactly the bytes appended, ``verify`` fails exactly when the store
is damaged and recovery reports exactly then.  Prints one JSON document::

    python benchmarks/store_corruption.py [--trials 2000] [--seed 1] [--kind swap_acks ...] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from tests.test_store_corruption import KINDS, RandomDraws, make_recipe, run_trial  # noqa: E402

from _machine import machine_info  # noqa: E402  (benchmarks/ is on sys.path when a script runs from it)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000, help="number of trials (default 2000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the recipes (default 1)")
    parser.add_argument("--kind", action="append", choices=KINDS, help="only these corruptions (repeatable)")
    parser.add_argument("--dir", default=None, help="where the temporary stores go (default: the system's)")
    parser.add_argument("--examples", type=int, default=10, help="failures to describe in full (default 10)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    trials: Counter = Counter()
    failed: Counter = Counter()
    checks: Counter = Counter()
    damaged = lost = 0
    examples: list[str] = []
    start = time.perf_counter()
    for i in range(args.trials):
        kind = args.kind[i % len(args.kind)] if args.kind else None
        recipe = make_recipe(RandomDraws(rng), kind=kind)
        directory = tempfile.mkdtemp(prefix="gwp-corrupt-", dir=args.dir)
        try:
            trial = run_trial(recipe, directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        trials[recipe.kind] += 1
        damaged += trial.damaged
        if trial.failures:
            failed[recipe.kind] += 1
            checks.update(set(trial.checks))
            lost += trial.lost
            if len(examples) < args.examples:
                examples.append(f"trial {i}: {trial.describe()}")
    seconds = time.perf_counter() - start
    print(json.dumps({
        "benchmark": "store_corruption",
        "trials": args.trials,
        "seed": args.seed,
        "seconds": round(seconds, 2),
        "trials_per_s": round(args.trials / seconds, 1) if seconds else None,
        "damaged_trials": damaged,
        "failures": sum(failed.values()),
        "lost_intact_pending_events": lost,
        "failed_checks": dict(checks.most_common()),
        "by_kind": {k: {"trials": trials[k], "failures": failed[k]} for k in KINDS if trials[k]},
        "examples": examples,
        "machine": machine_info(args.dir or tempfile.gettempdir()),
    }, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
