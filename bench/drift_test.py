"""The retrieval monitor's drift test: how long one test of two windows of question embeddings takes.

The monitor runs ``drift_test`` on a pool thread each time a window of questions fills (50 questions of a
384-dimension embedder, 500 permutations by default). It must stay well under the window's own time
(seconds of answers), so the budget is 250 ms for one test on one core; the figure is printed beside it,
with the same computation in plain numpy per permutation (the reference it is written against).

    .venv/bin/python bench/drift_test.py [--window 50] [--dim 384] [--permutations 500] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.trace.monitor import drift_test

BUDGET_MS = 250.0


def naive(x: np.ndarray, y: np.ndarray, permutations: int, seed: int = 0) -> float:
    """Energy distance with a permutation p-value, recomputing the distances for each permutation."""
    rng = np.random.default_rng(seed)
    both = np.concatenate([x, y])
    n = len(x)

    def energy(a: np.ndarray, b: np.ndarray) -> float:
        ab = np.linalg.norm(a[:, None] - b[None], axis=-1).mean()
        aa = np.linalg.norm(a[:, None] - a[None], axis=-1).mean()
        bb = np.linalg.norm(b[:, None] - b[None], axis=-1).mean()
        return float(2 * ab - aa - bb)

    observed = energy(x, y)
    beaten = 0
    for _ in range(permutations):
        order = rng.permutation(len(both))
        beaten += energy(both[order[:n]], both[order[n:]]) >= observed
    return (beaten + 1) / (permutations + 1)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--permutations", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, args.window, args.dim)).astype(np.float32)
    drift_test(x, y)  # warm up
    ours = timed(lambda: drift_test(x, y, permutations=args.permutations), args.repeats)
    plain = timed(lambda: naive(x, y, args.permutations), 1)
    shape = f"2 x {args.window} x {args.dim}, {args.permutations} permutations"
    print(f"drift_test ({shape}), median of {args.repeats}")
    print(f"{'':28}{'ms':>10}")
    print(f"{'drift_test':28}{ours:>10.1f}")
    print(f"{'plain numpy per permutation':28}{plain:>10.1f}")
    print(f"{'budget':28}{BUDGET_MS:>10.1f}")
    print(f"within budget: {'yes' if ours <= BUDGET_MS else 'NO'}; {plain / ours:.0f}x the plain computation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
