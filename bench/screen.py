"""Benchmark the batched pair screen (quantlib.screen) against a loop of statsmodels `coint` in the same run.

    python bench/screen.py [--symbols 50,120,400] [--bars 2880] [--sample 20] [--no-doc]

For each universe size: `screen_pairs` end to end (every unordered pair: both Engle-Granger regressions where
they matter, half-life, Hurst, correlation, stability halves, BH q-values, verdicts) on a synthetic universe
of 1-minute closes (random walks with a common market factor, some cointegrated pairs, prices from sub-cent
to 1e4), in a fresh process so that peak memory (ru_maxrss) belongs to that screen alone. The baseline is
statsmodels' `coint(y, x)` (AIC autolag, the same test) on a seeded sample of pairs of the same universe,
timed in the same run and extrapolated per pair. Everything runs with one BLAS thread; wall and CPU time
are both reported because the 2-core dev machine is shared (CPU time is the cost without interference).
Writes docs/bench-screen.md unless --no-doc.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd

import report  # noqa: E402  (bench/report.py; puts the repo root on sys.path)

TARGETS = {120: 10.0, 400: 60.0}  # symbols: seconds end to end


def universe(n_symbols: int, n_bars: int, seed: int = 0) -> pd.DataFrame:
    """Log-price random walks sharing a market factor; every 10th symbol is cointegrated with the next."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2026-01-01", periods=n_bars, freq="1min", tz="UTC")
    factor = np.cumsum(rng.normal(0, 8e-4, n_bars))
    logp = np.cumsum(rng.normal(0, 1e-3, (n_bars, n_symbols)), axis=0) + factor[:, None]
    for j in range(0, n_symbols - 1, 10):
        spread = np.zeros(n_bars)
        shocks = rng.normal(0, 5e-4, n_bars)
        phi = 0.9 + 0.09 * rng.random()
        for t in range(1, n_bars):
            spread[t] = phi * spread[t - 1] + shocks[t]
        logp[:, j + 1] = 0.8 + (0.5 + rng.random()) * logp[:, j] + spread
    scale = 10.0 ** rng.integers(-3, 5, n_symbols)
    return pd.DataFrame(scale * np.exp(logp), index=idx, columns=[f"SYM{j:03d}USDT" for j in range(n_symbols)])


def run_one(n_symbols: int, n_bars: int, sample: int) -> dict:
    """One universe size, in this process: screen wall/CPU time, coint loop on a sample, peak RSS."""
    from statsmodels.tsa.stattools import coint
    from threadpoolctl import threadpool_limits

    from quantlib import screen

    closes = universe(n_symbols, n_bars)
    warnings.simplefilter("ignore")
    with threadpool_limits(limits=1, user_api="blas"):
        screen.screen_pairs(closes.iloc[:, :4])              # imports and first-call set-up, not timed
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        c0, t0 = time.process_time(), time.perf_counter()
        res = screen.screen_pairs(closes)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rng = np.random.default_rng(1)
        pairs = [tuple(rng.choice(closes.columns, 2, replace=False)) for _ in range(sample)]
        logc = np.log(closes)
        coint(logc[pairs[0][0]].to_numpy(), logc[pairs[0][1]].to_numpy())
        c1, t1 = time.process_time(), time.perf_counter()
        for a, b in pairs:
            coint(logc[a].to_numpy(), logc[b].to_numpy(), trend="c", autolag="aic")
        base_wall, base_cpu = (time.perf_counter() - t1) / sample, (time.process_time() - c1) / sample
    planted = {(f"SYM{j:03d}USDT", f"SYM{j + 1:03d}USDT") for j in range(0, n_symbols - 1, 10)}
    found = {tuple(sorted((r.y, r.x))) for r in res.pairs.itertuples() if r.cointegrated}
    return {"symbols": n_symbols, "bars": n_bars, "pairs": res.n_pairs, "wall": wall, "cpu": cpu,
            "rss_mib": rss1 / 1024, "rss_growth_mib": (rss1 - rss0) / 1024, "base_wall": base_wall,
            "base_cpu": base_cpu, "sample": sample, "planted": len(planted), "planted_found": len(planted & found),
            "cointegrated": res.n_cointegrated, "significant": res.n_significant}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", default="50,120,400", help="universe sizes (default 50,120,400)")
    ap.add_argument("--bars", type=int, default=2880, help="1m bars per symbol (default 2880: two days)")
    ap.add_argument("--sample", type=int, default=20, help="pairs timed with statsmodels coint per size")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/bench-screen.md")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size, print JSON
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.bars, args.sample)))
        return 0
    results = []
    for n in (int(s) for s in args.symbols.split(",")):
        print(f"screening {n} symbols x {args.bars} bars ...", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--bars", str(args.bars),
                              "--sample", str(args.sample)], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = report.Table(
        f"quantlib.screen.screen_pairs vs a statsmodels coint loop ({args.bars:,} 1m bars, one BLAS thread, one process)",
        ["symbols", "pairs", "screen wall s", "screen CPU s", "pairs/s (wall)", "µs/pair (CPU)",
         "coint ms/pair (CPU)", "coint loop, est. s", "speed-up (CPU)", "peak RSS MiB", "planted found"])
    for r in results:
        table.add(r["symbols"], r["pairs"], r["wall"], r["cpu"], r["pairs"] / r["wall"], 1e6 * r["cpu"] / r["pairs"],
                  1e3 * r["base_cpu"], r["base_wall"] * r["pairs"], f"{r['base_cpu'] * r['pairs'] / r['cpu']:,.0f}×",
                  r["rss_mib"], f"{r['planted_found']}/{r['planted']}")
    print(table.text())
    notes = []
    for r in results:
        target = TARGETS.get(r["symbols"])
        if target:
            verdict = ("met" if r["wall"] < target else "met on CPU time, missed on wall time (shared machine)"
                       if r["cpu"] < target else "MISSED")
            notes.append(f"- {r['symbols']} symbols ({r['pairs']:,} pairs) end to end: {r['wall']:.1f} s wall, "
                         f"{r['cpu']:.1f} s CPU (target < {target:.0f} s): {verdict}")
    speed = min(r["base_cpu"] * r["pairs"] / r["cpu"] for r in results)
    notes.append(f"- speed-up over the statsmodels coint loop, CPU time: at least {speed:,.0f}× (target >= 100×)")
    print("\n".join(notes))
    if not args.no_doc:
        cmd = "python bench/screen.py " + " ".join(argv if argv is not None else sys.argv[1:])
        doc = report.write_doc("screen", "Pair screen benchmark: quantlib.screen vs statsmodels coint",
                               cmd.strip(), [table], WHY, "## Targets\n\n" + "\n".join(notes))
        print(f"\nwrote {doc}", file=sys.stderr)
    return 0


WHY = """
What a screened pair costs. statsmodels' `coint` fits every candidate lag of the residual ADF as its own OLS
(29 regressions at 2,880 bars) and repeats the set-up per pair. The screen instead expands the residual
e = ỹ − β·x̃ of each pair: every entry of the ADF Gram matrix is a lagged cross-product of the two legs
(Σ Δy_t Δx_{t−k}, Σ ỹ_t Δx_t, …), and one matrix product per lag over all symbols of a chunk gives these for
every pair of the chunk at once (BLAS). Per pair what remains is O(L²) assembly with edge corrections for
the exact sample window, one Cholesky for all candidate lags (nested models: AIC from one factor, as
statsmodels scores them on a common sample) and one small refit. The reverse regression and the two halves
are run only for pairs whose p-value is at most 0.25 (Benjamini–Hochberg q ≥ p, so no other pair can be
significant); Hurst comes from lagged level products the same way. Chunks of ~2,000 pairs keep memory flat:
peak RSS grows little from 50 to 400 symbols (most of it is numpy / scipy / statsmodels / pandas themselves).

"planted found": planted cointegrated pairs (every 10th symbol with the next, AR(1) spread with phi 0.90–0.99) reported "cointegrated" at 5 % FDR; the misses are the slowest spreads (half-lives of 60+ bars), whose p-values of ~1e-4 do not survive Benjamini–Hochberg over thousands of pairs.
"""


if __name__ == "__main__":
    sys.exit(main())
