"""Benchmark quantlib's analytics on 10k and 100k bars against baselines measured in the same run.

    .venv/bin/python bench/analytics.py            # prints a Markdown report (docs/bench-analytics.md)

Each cell is the median wall time of several runs (ms). Baselines: a pandas groupby for resampling,
statsmodels (OLS, RollingOLS, adfuller, coint, coint_johansen) and naive loops (rolling lstsq per window,
a textbook numpy-matrix Kalman filter). Everything runs with one BLAS thread (quantlib limits BLAS to
one thread itself; the baselines get the same, which is also their fastest setting on a busy machine).
Data: a synthetic cointegrated pair on 1-minute bars (random-walk leg, AR(1) spread, seeded).
"""
from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scipy  # noqa: E402
import statsmodels  # noqa: E402
import statsmodels.api as sm  # noqa: E402
from statsmodels.regression.rolling import RollingOLS  # noqa: E402
from statsmodels.tsa.stattools import adfuller, coint  # noqa: E402
from statsmodels.tsa.vector_ar.vecm import coint_johansen  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from quantlib import backtest, bars, indicators, pairs, regression, stattests  # noqa: E402

SIZES = (10_000, 100_000)
BUDGET_S = 1.0  # time spent per cell (at least one run, at most 15)
TARGETS = [  # (function, size, ms)
    ("pairs.pair_summary", 10_000, 50.0),
    ("regression.rolling_hedge_ratio ols w=100", 100_000, 500.0),
    ("regression.kalman_hedge_ratio", 100_000, 500.0),
]


def timed(func, budget_s: float = BUDGET_S, max_runs: int = 15) -> tuple[float, float]:
    """(best wall ms, best CPU ms) over up to `max_runs` runs within about `budget_s`, after a warm-up.

    The best run is the least disturbed by other processes; CPU time (this process) shows the cost
    without them. Everything timed here runs on one thread, so CPU time <= wall time.
    """
    t0 = time.perf_counter()
    func()
    first = time.perf_counter() - t0
    runs = max(1, min(max_runs, int(budget_s / max(first, 1e-6))))
    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        func()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall) * 1e3, min(cpu) * 1e3


def once(func) -> float:
    t0 = time.perf_counter()
    func()
    return (time.perf_counter() - t0) * 1e3


def make_pair(n: int, seed: int = 0) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    x = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    e = rng.normal(0, 0.05, n)
    s = np.empty(n)
    s[0] = 0.0
    for t in range(1, n):
        s[t] = 0.95 * s[t - 1] + e[t]
    return pd.Series(20 + 1.5 * x + s, idx, name="Y"), pd.Series(x, idx, name="X")


def make_ticks(n_bars: int, per_bar: int = 10, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_bars * per_bar
    off_us = np.sort(rng.integers(0, n_bars * 60_000_000, n))
    ts = pd.to_datetime(off_us + 1_704_067_200_000_000, unit="us", utc=True)
    return pd.DataFrame({"ts": ts, "price": 100 * np.exp(np.cumsum(rng.normal(0, 1e-4, n))),
                         "qty": rng.exponential(0.5, n), "trade_id": np.arange(n)})


def pandas_resample(ticks: pd.DataFrame) -> pd.DataFrame:
    t = ticks.assign(bucket=ticks["ts"].dt.floor("60s"), notional=ticks.price * ticks.qty)
    g = t.groupby("bucket")
    out = g.agg(open=("price", "first"), high=("price", "max"), low=("price", "min"), close=("price", "last"),
                volume=("qty", "sum"), quote_volume=("notional", "sum"), trades=("price", "count"))
    out["vwap"] = out.quote_volume / out.volume
    return out


def naive_rolling_ols(y: np.ndarray, x: np.ndarray, window: int) -> np.ndarray:
    out = np.full((len(y), 2), np.nan)
    for end in range(window, len(y) + 1):
        xw = x[end - window : end]
        out[end - 1] = np.linalg.lstsq(np.column_stack([np.ones(window), xw]), y[end - window : end], rcond=None)[0]
    return out


def naive_kalman(y: np.ndarray, x: np.ndarray, delta: float = 1e-4, r: float = 1e-3) -> np.ndarray:
    theta, p, q = np.zeros(2), np.zeros((2, 2)), np.eye(2) * delta / (1 - delta)
    out = np.empty((len(y), 2))
    for t in range(len(y)):
        p = p + q
        h = np.array([1.0, x[t]])
        s = h @ p @ h + r
        k = p @ h / s
        theta = theta + k * (y[t] - h @ theta)
        p = p - np.outer(k, h) @ p
        out[t] = theta
    return out


def rows_for(n: int) -> list[tuple[str, str, float, str, float]]:
    """(group, quantlib function, ms, baseline, baseline ms) for n bars."""
    y, x = make_pair(n)
    yv, xv = y.to_numpy(), x.to_numpy()
    spread = regression.hedge_ratio(y, x).residuals
    frame = pd.DataFrame({"y": y, "x": x})
    ticks = make_ticks(n)
    big = n >= 100_000
    rows = []

    def add(group, name, fn, base_name="", base_fn=None, base_once=False):
        ms, cpu = timed(fn)
        if base_fn is None:
            bms = float("nan")
        else:
            bms = once(base_fn) if base_once else timed(base_fn)[0]
        rows.append((group, name, ms, cpu, base_name, bms))
        print(f"  {n:>7} {name:<42} {ms:10.2f} ms (cpu {cpu:.2f})  {base_name} {bms:.2f}", file=sys.stderr)

    add("bars", f"bars.resample 1m ({len(ticks):,} ticks)", lambda: bars.resample(ticks, "1m"),
        "pandas groupby agg", lambda: pandas_resample(ticks))
    add("indicators", "indicators.sma n=20", lambda: indicators.sma(x, 20))
    add("indicators", "indicators.ema n=20", lambda: indicators.ema(x, 20))
    add("indicators", "indicators.rsi n=14", lambda: indicators.rsi(x, 14))
    add("indicators", "indicators.realized_volatility n=60", lambda: indicators.realized_volatility(x, 60, "1m"))
    add("indicators", "indicators.zscore n=60", lambda: indicators.zscore(spread, 60))
    add("regression", "regression.hedge_ratio ols", lambda: regression.hedge_ratio(y, x),
        "statsmodels OLS", lambda: sm.OLS(yv, sm.add_constant(xv)).fit())
    add("regression", "regression.hedge_ratio huber", lambda: regression.hedge_ratio(y, x, "huber"))
    add("regression", "regression.hedge_ratio theil_sen", lambda: regression.hedge_ratio(y, x, "theil_sen"))
    add("regression", "regression.hedge_ratio tls", lambda: regression.hedge_ratio(y, x, "tls"))
    add("regression", "regression.rolling_hedge_ratio ols w=100", lambda: regression.rolling_hedge_ratio(y, x, 100),
        "statsmodels RollingOLS", None if big else (lambda: RollingOLS(yv, sm.add_constant(xv), window=100).fit()),
        base_once=True)
    add("regression", "regression.rolling_hedge_ratio tls w=100",
        lambda: regression.rolling_hedge_ratio(y, x, 100, "tls"),
        "naive lstsq loop (ols)" if not big else "", None if big else (lambda: naive_rolling_ols(yv, xv, 100)),
        base_once=True)
    add("regression", "regression.kalman_hedge_ratio", lambda: regression.kalman_hedge_ratio(y, x),
        "numpy-matrix loop", lambda: naive_kalman(yv, xv), base_once=True)
    add("stattests", "stattests.adf (AIC)", lambda: stattests.adf(spread),
        "statsmodels adfuller", None if big else (lambda: adfuller(spread.to_numpy(), result_object=True)),
        base_once=True)
    add("stattests", "stattests.engle_granger", lambda: stattests.engle_granger(y, x),
        "statsmodels coint", None if big else (lambda: coint(yv, xv)), base_once=True)
    add("stattests", "stattests.johansen", lambda: stattests.johansen(frame),
        "statsmodels coint_johansen", lambda: coint_johansen(frame.to_numpy(), 0, 1))
    add("stattests", "stattests.half_life", lambda: stattests.half_life(spread))
    add("stattests", "stattests.hurst", lambda: stattests.hurst(spread))
    add("pairs", "pairs.rolling_correlation w=100", lambda: pairs.rolling_correlation(y, x, 100))
    add("pairs", "pairs.pair_summary", lambda: pairs.pair_summary(y, x, window=100, timeframe="1m"))
    add("backtest", "backtest.mean_reversion rolling", lambda: backtest.mean_reversion(y, x, window=100))
    return rows


def main() -> None:
    warnings.simplefilter("ignore")
    results: dict[int, list] = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for n in SIZES:
            print(f"benchmarking {n} bars ...", file=sys.stderr)
            results[n] = rows_for(n)
    small, large = results[SIZES[0]], results[SIZES[1]]

    def fmt(v: float) -> str:
        return "—" if np.isnan(v) else (f"{v:,.0f}" if v >= 100 else f"{v:.2f}" if v < 10 else f"{v:.1f}")

    def ratio(ms: float, base: float) -> str:
        return "" if np.isnan(base) else f"{base / ms:,.0f}x" if base / ms >= 10 else f"{base / ms:.1f}x"

    load = os.getloadavg()
    print("# quantlib analytics benchmark\n")
    print(f"`bench/analytics.py`, run {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC on {platform.machine()} "
          f"with {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}, "
          f"pandas {pd.__version__}, scipy {scipy.__version__}, statsmodels {statsmodels.__version__}, one BLAS "
          f"thread. Load average {load[0]:.1f} at the end of the run: other processes shared the machine, so "
          "wall times include their interference; CPU times (this process only) show the cost without it.\n")
    print("Regenerate with `.venv/bin/python bench/analytics.py > docs/bench-analytics.md` (about 30 s).\n")
    print("Cells: best wall time of up to 15 runs in milliseconds, CPU time in parentheses. Baselines ran once "
          "in the same run (statsmodels OLS and coint_johansen: best of several); slow baselines were "
          "skipped at 100k bars (—: minutes each).\n")
    print("| function | 10k bars | 100k bars | baseline | baseline 10k | baseline 100k | speed-up 10k | speed-up 100k |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for (g, name, ms1, cpu1, base, b1), (_, _, ms2, cpu2, _, b2) in zip(small, large):
        label = name.split(" (")[0] if name.startswith("bars.resample") else name
        print(f"| `{label}` | {fmt(ms1)} ({fmt(cpu1)}) | {fmt(ms2)} ({fmt(cpu2)}) | {base} | {fmt(b1)} | {fmt(b2)} "
              f"| {ratio(ms1, b1)} | {ratio(ms2, b2)} |")
    print("\nResampling input: 10 ticks per bar (100k and 1M ticks). `theil_sen` is exact up to 250k pairs, "
          "then a seeded sample of 250k pairs. Rolling OLS/TLS are closed forms over pandas rolling moments; "
          "the Kalman filter is a scalar-unrolled 2x2 loop. `adf` scores all candidate lags from one QR "
          "(maxlag 38 at 10k bars, 68 at 100k).\n")
    print("## Targets\n")
    by_name = {(name, n): (ms, cpu) for n, rows in results.items() for _, name, ms, cpu, _, _ in rows}
    for name, n, target in TARGETS:
        ms, cpu = by_name[(name, n)]
        print(f"- `{name}` on {n // 1000}k bars: {ms:.1f} ms wall, {cpu:.1f} ms CPU (target < {target:.0f} ms): "
              f"{'met' if ms < target else 'met on CPU time, missed on wall time' if cpu < target else 'MISSED'}")


if __name__ == "__main__":
    main()
