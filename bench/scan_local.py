"""How scanner.py should run a local screen: in this process, or over a pool of worker processes.

    .venv/bin/python bench/scan_local.py [--symbols 50,120,200,400] [--bars 2880] [--workers 2]

For each universe size (synthetic 1-minute closes: a common market factor plus one random walk per symbol,
seeded) the same chunks go through `scanner.screen_local` (the baseline: one process, the screen vectorised
across each chunk's pairs) and `scanner.screen_pool` (spawned workers, closes sent once per worker), in the same
run; the rows must be identical. Reported: wall time, CPU seconds (this process + its children) and pairs/s.
Wall times on a busy machine are noisy; CPU seconds show the cost. The pool's fixed cost (spawning workers
that import pandas / statsmodels / quantlib) is measured alone first.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scanner  # noqa: E402
from quantlib.screen import pair_chunks  # noqa: E402


def closes(n_symbols: int, n_bars: int, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    factor = np.cumsum(rng.normal(0, 1e-3, n_bars))
    logp = 0.8 * factor[:, None] + np.cumsum(rng.normal(0, 1e-3, (n_bars, n_symbols)), axis=0)
    index = pd.date_range("2024-01-01", periods=n_bars, freq="1min", tz="UTC", name="ts")
    return pd.DataFrame(np.exp(logp) * 100, index=index, columns=[f"S{i:03d}USDT" for i in range(n_symbols)])


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(func):
    c0, t0 = cpu_s(), time.perf_counter()
    out = func()
    return out, time.perf_counter() - t0, cpu_s() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", default="50,120,200,400")
    ap.add_argument("--bars", type=int, default=2880)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    logging.disable(logging.INFO)          # no progress lines
    sizes = [int(s) for s in a.symbols.split(",")]

    tiny = closes(3, a.bars)
    _, start_wall, start_cpu = timed(lambda: scanner.screen_pool(tiny, pair_chunks(list(tiny.columns), 1), _Quiet(),
                                                                 {}, a.workers))
    scanner.screen_local(tiny, pair_chunks(list(tiny.columns), 10), _Quiet(), {})      # warm imports
    rows = []
    for n in sizes:
        frame = closes(n, a.bars)
        chunks = pair_chunks(list(frame.columns), scanner.CHUNK_PAIRS)
        pairs = sum(map(len, chunks))
        local, lw, lc = timed(lambda: scanner.screen_local(frame, chunks, _Quiet(), {}))
        pooled, pw, pc = timed(lambda: scanner.screen_pool(frame, chunks, _Quiet(), {}, a.workers))
        pd.testing.assert_frame_equal(pd.concat(local, ignore_index=True), pd.concat(pooled, ignore_index=True),
                                      check_exact=True)
        auto = scanner.local_workers(None, pairs, len(chunks))
        rows.append((n, pairs, len(chunks), lw, lc, pw, pc, "pool" if auto > 1 else "in-process"))
        print(f"  {n} symbols done", file=sys.stderr, flush=True)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# scanner local execution: in-process vs a pool of {a.workers} spawned workers\n")
    print(f"{platform.python_version()}, {cores} cores, load average {load:.1f} at the end; {a.bars} bars per "
          f"symbol, {scanner.CHUNK_PAIRS} pairs per chunk. Pool start-up alone (spawn {a.workers} workers, import, "
          f"one tiny chunk): {start_wall:.2f} s wall, {start_cpu:.2f} CPU-s.\n")
    print("| symbols | pairs | chunks | in-process wall s | in-process CPU s | in-process pairs/s | "
          f"pool({a.workers}) wall s | pool CPU s | pool pairs/s | pool / in-process wall | auto picks |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n, pairs, nch, lw, lc, pw, pc, auto in rows:
        print(f"| {n} | {pairs:,} | {nch} | {lw:.2f} | {lc:.2f} | {pairs / lw:,.0f} | {pw:.2f} | {pc:.2f} | "
              f"{pairs / pw:,.0f} | {pw / lw:.2f} | {auto} |")
    return 0


class _Quiet(scanner.Progress):
    def __init__(self):
        super().__init__(1, 1, every_s=1e9)


if __name__ == "__main__":
    sys.exit(main())
