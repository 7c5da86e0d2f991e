"""The local exchange's funding model against an independent computation from the simulated paths (pandas
groupby by period, Binance's formula written out by hand), and the perpetual's trades against spot's."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from exchange.funding import FundingBook, funding_rate
from exchange.model import STEP_US, Simulator


def test_binance_formula_by_hand():
    # F = P + clamp(0.01 % - P, -0.05 %, 0.05 %), capped at 0.75 %
    assert funding_rate(0.0002) == pytest.approx(0.0001)          # within the band: the interest rate
    assert funding_rate(-0.0004) == pytest.approx(0.0001)
    assert funding_rate(0.0008) == pytest.approx(0.0008 - 0.0005)  # above: premium minus the clamp
    assert funding_rate(-0.0010) == pytest.approx(-0.0010 + 0.0005)
    assert funding_rate(0.02) == pytest.approx(0.0075)             # cap
    assert funding_rate(-0.02) == pytest.approx(-0.0075)


@pytest.mark.parametrize("interval_s", [600.0, 3600.0])
def test_settled_rates_equal_a_hand_computation_from_the_paths(interval_s):
    sim = Simulator(("BTCUSDT", "ETHUSDT"), ("spot", "usdm"), seed=21, rate=0.0)
    book = FundingBook(("BTCUSDT", "ETHUSDT"), interval_s)
    t0 = 1_800_000_000_000_000 + 7 * STEP_US   # not on a period boundary: the first period is partial
    n, chunk = int(4 * 3600 * 1e6 / STEP_US), 7_001  # odd chunks: periods end inside a call
    paths = {s: [] for s in sim.symbols}
    for lo in range(0, n, chunk):
        starts = t0 + STEP_US * np.arange(lo, min(n, lo + chunk), dtype=np.int64)
        sim.step(starts)
        for s, (t, lp, b) in sim.last_paths.items():
            book.add(s, t, lp, b)
            paths[s].append(pd.DataFrame({"t": t, "lp": lp, "b": b}))
    scale = interval_s / 28800
    for s in sim.symbols:
        df = pd.concat(paths[s], ignore_index=True)
        df["period"] = df["t"] // int(interval_s * 1e6)
        df["premium"] = np.exp(df["lp"] + df["b"]) / np.exp(df["lp"]) - 1   # mark / index - 1
        g = df.groupby("period")
        avg = g["premium"].mean()
        last_mark = g.apply(lambda x: float(np.exp(x["lp"].iloc[-1] + x["b"].iloc[-1])), include_groups=False)
        settled = avg.index[:-1]   # the running period has not ended
        expected = [max(-0.0075, min(0.0075, scale * (p + min(max(1e-4 - p, -5e-4), 5e-4)))) for p in avg[settled]]
        t, r, m = book.history(s)
        np.testing.assert_array_equal(t, (settled + 1) * int(interval_s * 1e6))
        np.testing.assert_allclose(r, expected, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(m, last_mark[settled], rtol=1e-12)
        # the running estimate of the stream
        snap = book.snapshot(s)
        running = avg.iloc[-1]
        assert snap[3] == pytest.approx(scale * (running + min(max(1e-4 - running, -5e-4), 5e-4)), rel=1e-9)
        assert snap[4] == (avg.index[-1] + 1) * int(interval_s * 1e6)


def test_basis_is_small_mean_reverting_and_perp_trades_follow_it():
    sim = Simulator(("BTCUSDT",), ("spot", "usdm"), seed=4, rate=40.0)
    n = int(3 * 3600 * 1e6 / STEP_US)
    starts = STEP_US * np.arange(n, dtype=np.int64) + 1_800_000_000_000_000
    out = sim.step(starts)
    _, lp, b = sim.last_paths["BTCUSDT"]
    bps = b * 1e4
    assert -40 < bps.min() and bps.max() < 40 and abs(bps.mean()) < 20   # a few bp around +2 bp
    # usdm prints centre on index * exp(basis), spot prints on the index: their log ratio per step tracks b
    spot, perp = out[("spot", "BTCUSDT")], out[("usdm", "BTCUSDT")]
    sp = pd.Series(spot.trade_price / 10**spot.instrument.tick_dec, index=(spot.trade_time - starts[0]) // STEP_US)
    pp = pd.Series(perp.agg_price / 10**perp.instrument.tick_dec, index=(perp.agg_time - starts[0]) // STEP_US)
    per_min = lambda x: x.groupby(x.index // 1200).median()   # noqa: E731  (1-minute medians)
    ratio = np.log(per_min(pp) / per_min(sp)).dropna() * 1e4
    b_min = pd.Series(bps).groupby(np.arange(n) // 1200).mean().loc[ratio.index]
    assert np.corrcoef(ratio, b_min)[0, 1] > 0.8
    assert abs((ratio - b_min).median()) < 1.0   # within a tick of 0.1 / 93k ~ 0.01 bp plus the spread noise
