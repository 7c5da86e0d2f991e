"""How scanner.py should run a local screen: in this process, or over a pool of worker processes.

    .venv/bin/python bench/scan_local.py [--symbols 50,120,200,400] [--bars 2880] [--workers 2] [--no-doc]

For each universe size (synthetic 1-minute closes: a common market factor plus one random walk per symbol,
seeded) the same chunks go through `scanner.screen_local` (the baseline: one process, the screen vectorised
across each chunk's pairs) and `scanner.screen_pool` (spawned workers, closes sent once per worker), in the same
run; the rows must be identical. Reported: wall time, CPU seconds (this process + its children) and pairs/s.
Wall times on a busy machine are noisy; CPU seconds show the cost. The pool's fixed cost (spawning workers
that import pandas / statsmodels / quantlib) is measured alone first. Writes docs/bench-scan-local.md unless
--no-doc.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np
import pandas as pd

import report  # noqa: E402  (bench/report.py; puts the repo root on sys.path)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", default="50,120,200,400")
    ap.add_argument("--bars", type=int, default=2880)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/bench-scan-local.md")
    args = ap.parse_args(argv)
    logging.disable(logging.INFO)          # no progress lines
    sizes = [int(s) for s in args.symbols.split(",")]

    tiny = closes(3, args.bars)
    _, start_wall, start_cpu = timed(lambda: scanner.screen_pool(tiny, pair_chunks(list(tiny.columns), 1), _Quiet(),
                                                                 {}, args.workers))
    scanner.screen_local(tiny, pair_chunks(list(tiny.columns), 10), _Quiet(), {})      # warm imports
    table = report.Table(
        f"scanner local screen: in-process vs a pool of {args.workers} spawned workers ({args.bars:,} 1m bars, "
        f"{scanner.CHUNK_PAIRS:,} pairs per chunk)",
        ["symbols", "pairs", "chunks", "in-process wall s", "in-process CPU s", "in-process pairs/s",
         f"pool({args.workers}) wall s", "pool CPU s", "pool pairs/s", "pool / in-process wall",
         "idle est. in-process s", f"idle est. pool({args.workers}) s", "auto picks"])
    for n in sizes:
        print(f"screening {n} symbols x {args.bars} bars ...", file=sys.stderr, flush=True)
        frame = closes(n, args.bars)
        chunks = pair_chunks(list(frame.columns), scanner.CHUNK_PAIRS)
        pairs = sum(map(len, chunks))
        local, lw, lc = timed(lambda: scanner.screen_local(frame, chunks, _Quiet(), {}))
        pooled, pw, pc = timed(lambda: scanner.screen_pool(frame, chunks, _Quiet(), {}, args.workers))
        pd.testing.assert_frame_equal(pd.concat(local, ignore_index=True), pd.concat(pooled, ignore_index=True),
                                      check_exact=True)
        auto = scanner.local_workers(None, pairs, len(chunks))
        table.add(n, pairs, len(chunks), lw, lc, pairs / lw, pw, pc, pairs / pw, pw / lw, lc, pc / args.workers,
                  f"pool({auto})" if auto > 1 else "in-process")
    print(table.text())
    notes = (f"Pool start-up alone (spawn {args.workers} workers, imports, one tiny chunk): {start_wall:.2f} s wall, "
             f"{start_cpu:.2f} CPU-s. `--workers auto` runs scans below {scanner.POOL_MIN_PAIRS:,} pairs in-process.")
    print(notes)
    if not args.no_doc:
        cmd = "python bench/scan_local.py " + " ".join(argv if argv is not None else sys.argv[1:])
        doc = report.write_doc("scan-local", "scanner.py local execution: in-process vs process pool", cmd.strip(),
                               [table], WHY, notes)
        print(f"\nwrote {doc}", file=sys.stderr)
    return 0


WHY = """
The screen is vectorised across the pairs of a chunk and runs with one BLAS thread, so one process uses one
core. A pool of spawned workers uses every core but first pays a fixed cost: each worker starts a Python
interpreter and imports pandas, scipy, statsmodels and quantlib (a few CPU-seconds each), and receives the
closes frame once (pickled: 400 symbols x 2,880 bars is 9 MB). Small scans finish in-process before the
workers would be ready; large ones (hundreds of symbols, tens of thousands of pairs) divide by the core count.
CPU seconds include the workers' (children's) time. With other jobs on the machine the wall-time gain of the
pool shrinks: the workers compete for the same cores. The "idle est." columns are what the CPU seconds imply
on an otherwise idle machine with at least as many cores as workers: in-process = its CPU time, pool = its CPU
time (start-up included) divided by the workers; `POOL_MIN_PAIRS` in scanner.py sits where they cross.
"""


class _Quiet(scanner.Progress):
    def __init__(self):
        super().__init__(1, 1, every_s=1e9)


if __name__ == "__main__":
    sys.exit(main())
