"""The demo universe (exchange/universe.py): a screen of it finds the designed pairs and not the look-alikes.

References: the design table in exchange/universe.py (betas, half-lives, look-alike correlations); the pair screen
is `quantlib.screen.screen_pairs` (Engle-Granger + Benjamini-Hochberg); half-lives of the spreads with the known
betas are checked with `stattests.half_life` against the closed form of the OU spread. Seeded simulations only.

Window: 24 h of 1-minute closes. An Engle-Granger test needs roughly 40-100 half-lives of data to reject at the
level a Benjamini-Hochberg screen of 276 pairs asks for (p below ~1e-3), so the 10-minute UNI/LINK pair needs
about a day; the 2-hour check below shows what two hours at the full rate can and cannot show. `ingestor.py
--demo` therefore loads 24 h (older than 2 h thinned), and its stored file is screened by `scanner.py` below.
"""
from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from exchange.model import STEP_US, Simulator
from exchange.universe import LOOKALIKES, MAJORS, PAIRS, SPECS, STABLE, demo_symbols, rate_scale
from quantlib.screen import screen_pairs
from dashboard import tables
from tests.conftest import assert_no_exception, page_text, plotly_specs, table_value
from quantlib.stattests import half_life

ROOT = Path(__file__).resolve().parents[1]
UNIVERSE = demo_symbols("spot")
STEPS_PER_MIN = 60_000_000 // STEP_US
CHUNK_MIN = 30
FDR = 0.05
# Factor-only pairs a 24 h screen may call cointegrated (of ~265 true nulls at FDR 5 %). Over 8 seeds the screen
# made 0.6 such calls per run on average, in clusters sharing one wandering leg (e.g. TRX/LINK with TRX/UNI).
FALSE_BUDGET = 2
SEEDS = (7, 11, 23)


def model_closes(seed: int, hours: float, symbols=UNIVERSE) -> pd.DataFrame:
    """Latent 1-minute log closes of the model (no prints): what the demo's bar closes track."""
    sim = Simulator(tuple(symbols), ("spot",), seed=seed, rate=0.0)
    parts = [sim.log_prices(CHUNK_MIN * STEPS_PER_MIN, every=STEPS_PER_MIN) for _ in range(int(hours * 60 / CHUNK_MIN))]
    index = pd.date_range("2026-01-01", periods=sum(len(p[symbols[0]]) for p in parts), freq="1min", tz="UTC")
    return pd.DataFrame({s: np.concatenate([p[s] for p in parts]) for s in symbols}, index=index)


def print_closes(seed: int, hours: float, rate: float = 5.0) -> pd.DataFrame:
    """1-minute log closes of the prints the demo exchange makes (spot, demo rates), NaN for an empty minute."""
    sim = Simulator(UNIVERSE, ("spot",), seed=seed, rate=rate, rate_scale={s: rate_scale(s) for s in UNIVERSE})
    n_min = int(hours * 60)
    steps = np.arange(CHUNK_MIN * STEPS_PER_MIN, dtype=np.int64) * STEP_US
    out: dict[str, list[pd.Series]] = {s: [] for s in UNIVERSE}
    for k in range(n_min // CHUNK_MIN):
        for (_, sym), b in sim.step(steps + k * CHUNK_MIN * STEPS_PER_MIN * STEP_US).items():
            minute = b.trade_time // 60_000_000
            price = b.trade_price * b.instrument.tick_size
            last = pd.Series(price).groupby(minute).last()  # prints are in time order
            out[sym].append(np.log(last))
    index = pd.date_range("2026-01-01", periods=n_min, freq="1min", tz="UTC")
    return pd.DataFrame({s: pd.concat(v).reindex(range(n_min)).to_numpy() for s, v in out.items()}, index=index)


def screen(log_closes: pd.DataFrame) -> pd.DataFrame:
    """`quantlib.screen.screen_pairs` of the closes: one row per unordered pair (y, x, eg_qvalue, cointegrated, ...)."""
    return screen_pairs(np.exp(log_closes), fdr=FDR).pairs


def row(df: pd.DataFrame, a: str, b: str) -> pd.Series:
    hit = df[((df.y == a) & (df.x == b)) | ((df.y == b) & (df.x == a))]
    assert len(hit) == 1, (a, b)
    return hit.iloc[0]


def classify(df: pd.DataFrame) -> pd.Series:
    designed = {frozenset(p[:2]) for p in PAIRS}
    looks = {frozenset(p[:2]) for p in LOOKALIKES}
    kinds = []
    for y, x in zip(df.y, df.x):
        k = frozenset((y, x))
        kinds.append("pair" if k in designed else "lookalike" if k in looks
                     else "stable" if k & set(STABLE) else "factor")
    return pd.Series(kinds, index=df.index)


# --- the design ----------------------------------------------------------------------------------------------

def test_universe_is_binance_like_and_consistent():
    assert len(UNIVERSE) == 24 and len(set(UNIVERSE)) == 24 and UNIVERSE[:4] == MAJORS
    usdm = demo_symbols("usdm")
    assert "1000SHIBUSDT" in usdm and "1000PEPEUSDT" in usdm and "FDUSDUSDT" not in usdm and len(usdm) == 23
    for sym, spec in SPECS.items():
        assert spec.anchor == "" or spec.anchor in SPECS, sym
    assert {p[0] for p in PAIRS} | {p[1] for p in PAIRS} <= set(UNIVERSE)
    assert sorted(round(p[3], 2) for p in PAIRS) == [1.0, 2.0, 3.0, 5.0, 10.0]  # half-lives, minutes
    assert ("ETHUSDT", "BTCUSDT", 1.15, 3.0) in PAIRS  # as before the universe existed
    assert len(LOOKALIKES) == 3 and STABLE == ("FDUSDUSDT",)
    sim = Simulator(UNIVERSE, ("spot", "usdm"), seed=7, rate=5.0)
    spot = {s: sim.instruments[("spot", s)] for s in UNIVERSE}
    assert spot["SHIBUSDT"].tick_size == pytest.approx(1e-8) and spot["PEPEUSDT"].tick_size == pytest.approx(1e-8)
    assert spot["FDUSDUSDT"].tick_size == pytest.approx(1e-4)
    assert 0.99 < sim.models["FDUSDUSDT"].price0 < 1.0 and sim.models["PEPEUSDT"].price0 < 1e-4
    # every other price prints with at least 4 significant digits, as on Binance
    for s in UNIVERSE:
        if s not in ("SHIBUSDT", "PEPEUSDT", "FDUSDUSDT"):
            assert spot[s].tick_size / sim.models[s].price0 < 2e-4, s


def test_explicit_symbols_keep_working_and_do_not_change_each_other():
    """A pair's legs simulate their anchors even when those are not traded; unknown symbols still get a model."""
    alone = model_closes(5, 1, symbols=("AVAXUSDT", "ZZZUSDT"))
    full = model_closes(5, 1, symbols=("SOLUSDT", "AVAXUSDT", "BTCUSDT"))
    np.testing.assert_array_equal(alone["AVAXUSDT"].to_numpy(), full["AVAXUSDT"].to_numpy())
    assert alone["ZZZUSDT"].notna().all() and alone["ZZZUSDT"].std() > 0


@pytest.mark.slow
def test_model_correlations_and_half_lives():
    """1m return correlations and spread half-lives over 24 h match the design (seeded, one day)."""
    closes = model_closes(3, 24)
    rets = closes.diff().dropna()
    for y, x, beta in LOOKALIKES:
        assert rets[y].corr(rets[x]) > 0.95, (y, x)
    others = [(a, b) for a, b in itertools.combinations(UNIVERSE, 2) if not ({a, b} & set(STABLE))]
    corrs = pd.Series({(a, b): rets[a].corr(rets[b]) for a, b in others})
    factor_only = corrs.drop([(a, b) for a, b in corrs.index
                              if frozenset((a, b)) in {frozenset(p[:2]) for p in (*PAIRS, *LOOKALIKES)}])
    assert factor_only.between(0.05, 0.9).all() and 0.2 < factor_only.median() < 0.6
    for y, x, beta, hl_min in PAIRS:  # spread with the true beta: half-life within 30 % of the design
        spread = closes[y] - beta * closes[x]
        assert half_life(spread).half_life == pytest.approx(hl_min, rel=0.3), (y, x)
    assert closes["FDUSDUSDT"].sub(np.log(0.9985)).abs().max() < 0.01  # pegged


# --- the screen ----------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_screen_of_a_day_finds_every_designed_pair_and_no_lookalike(seed):
    df = screen(model_closes(seed, 24))
    kind = classify(df)
    found = df.eg_qvalue < FDR  # Engle-Granger rejects both ways, Benjamini-Hochberg over all 276 pairs
    for y, x, beta, hl in PAIRS:
        r = row(df, y, x)
        assert r.eg_qvalue < FDR and r.hedge_ratio == pytest.approx(beta if r.y == y else 1 / beta, rel=0.2), \
            (seed, y, x, r.eg_qvalue, r.hedge_ratio)
    assert not (found & (kind == "lookalike")).any(), df[kind == "lookalike"]
    stable = df[kind == "stable"]
    assert not (found & (kind == "stable")).any() and not stable.cointegrated.any()
    false = df[found & (kind == "factor")]
    assert len(false) <= FALSE_BUDGET, false


@pytest.mark.slow
def test_demo_prints_track_the_model_and_two_hours_show_no_lookalike():
    """The closes of the prints (what the ingestor stores) follow the latent model; in the demo's first 2 h the
    look-alikes are not called cointegrated (the designed pairs need more data, see the module docstring)."""
    seed = 7
    prints = print_closes(seed, 2)
    latent = model_closes(seed, 2)
    assert (prints.notna().mean() > 0.95).all(), prints.notna().mean()
    pr, lr = prints.ffill().diff().iloc[1:], latent.diff().iloc[1:]
    # the only noise: the last print's time in the minute (rate), bid/ask bounce and ticks (SHIB, PEPE: 8-14 bp)
    track = pd.Series({s: pr[s].corr(lr[s]) for s in UNIVERSE if s not in STABLE})
    assert track[list(MAJORS)].min() > 0.98 and track.min() > 0.6 and track.median() > 0.9, track.round(3)
    for y, x, beta in LOOKALIKES:
        assert pr[y].corr(pr[x]) > 0.9, (y, x)  # ~0.95 (0.975 in the model)
    assert prints["FDUSDUSDT"].apply(np.exp).between(0.995, 1.0).all()
    df = screen(prints)
    assert not df.loc[classify(df) == "lookalike", "cointegrated"].any()
    assert (df.n_bars > 0.9 * len(prints)).all()


# --- the ingestor -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ingestor_demo_without_symbols_stores_the_universe_and_the_app_opens_on_its_majors(tmp_path, app):
    from tickstore.queries import symbols as stored_symbols

    db = tmp_path / "demo.duckdb"
    log = open(tmp_path / "ingestor.log", "w")
    proc = subprocess.Popen([sys.executable, "ingestor.py", "--demo", "--db", str(db), "--history", "5m",
                             "--no-alerts"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        stored: set[str] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1.0)
            if db.exists():
                try:
                    frame = stored_symbols(db)
                except Exception:  # locked by a flush or not yet created; retry
                    continue
                stored = set(frame["symbol"])
                if stored >= set(UNIVERSE):
                    break
        missing = sorted(set(UNIVERSE) - stored)
        assert stored == set(UNIVERSE), (missing, (tmp_path / "ingestor.log").read_text()[-2000:])
        counts = frame.set_index("symbol")["ticks"]
        assert counts[list(MAJORS)].median() > 3 * counts.drop(list(MAJORS)).median()  # majors trade 2.5-10x more
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        log.close()
    assert rc == 0

    # the app: 24 symbols in the summary, four charts (the majors), the ETH/BTC pair by default
    at = app(db)
    assert_no_exception(at)
    assert at.multiselect(key="sym").value == sorted(MAJORS)
    assert len(at.multiselect(key="sym").options) == 24
    assert set(at.table[0].value.index) == set(MAJORS)  # window stats of the charted symbols
    assert len(at.table[-1].value) == 20  # the summary opens on the 20 most active symbols
    at.selectbox(key="sum_n").set_value("All").run()
    summary = table_value(at.table[-1], tables.SUMMARY_COLUMNS)  # all symbols, last 24 h
    assert set(summary.index) == set(UNIVERSE) and summary.loc["PEPEUSDT", "last_price"] < 1e-4
    assert (at.selectbox(key="y").value, at.selectbox(key="x").value) == ("ETHUSDT", "BTCUSDT")
    for page in ("app_pages/pairs.py", "app_pages/backtest.py", "app_pages/data.py"):
        at.switch_page(page).run()
        assert_no_exception(at)
        assert plotly_specs(at) or "need" in page_text(at).lower(), (page, page_text(at)[:500])


@pytest.mark.slow
def test_ingestor_demo_loads_a_thinned_day_and_scanner_finds_every_designed_pair(tmp_path):
    """`ingestor.py --demo` (default history: 24 h, prints older than ~2 h thinned smoothly) over real sockets,
    then `scanner.py --lookback 24h` on the file it stored: the five designed pairs, no look-alike. The stored
    day has no activity cliff: every hour holds at least 0.2x the trades per hour of the newest 2 h."""
    from tickstore.connection import read_connection
    from tickstore.queries import symbols as stored_symbols

    db, log_path, out = tmp_path / "demo.duckdb", tmp_path / "ingestor.log", tmp_path / "pairs.csv"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "ingestor.py", "--demo", "--db", str(db), "--no-alerts"], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300  # a loaded 2-core host; ~20-40 s when calm
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1.0)
            text = log_path.read_text()  # one catch-up of the newest 2 h and one load of the older part per symbol
            if text.count("trades of history") >= 2 * len(UNIVERSE):
                break
        time.sleep(2.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        log.close()
    text = log_path.read_text()
    assert rc == 0 and text.count("trades of history") >= 2 * len(UNIVERSE), text[-3000:]
    assert "loading 7200s of history" in text and "then the older part" in text, text[:3000]
    assert "the oldest 79200 s thinned" in text, text[:3000]

    frame = stored_symbols(db).set_index("symbol")
    assert set(frame.index) == set(UNIVERSE)
    span_h = (frame.last_ts - frame.first_ts).dt.total_seconds() / 3600
    assert (span_h > 23.5).all(), span_h
    assert 1_000_000 < frame.ticks.sum() < 2_000_000, frame.ticks.sum()  # ~0.45x a day at the full rate (3.4M)
    with read_connection(db) as con:
        rows = con.execute("SELECT symbol, floor((epoch(max(ts) OVER (PARTITION BY symbol)) - epoch(ts)) / 3600) "
                           "AS age_h FROM ticks WHERE symbol IN ('BTCUSDT', 'DOGEUSDT')").df()
    for sym, ages in rows.groupby("symbol").age_h:
        per_hour = ages.value_counts().sort_index().loc[:23]
        live = per_hour.loc[:1].mean()                          # the newest 2 h: the live rate
        assert (per_hour / live).min() > 0.2, (sym, (per_hour / live).round(2).tolist())
        assert (per_hour.shift(-1) / per_hour).dropna().min() > 0.4, (sym, per_hour.tolist())   # no cliff

    run = subprocess.run([sys.executable, "scanner.py", "--db", str(db), "--lookback", "24h", "--top", "10",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    df = pd.read_csv(out)
    assert len(df) == 276 and (df.n_bars > 0.9 * 1440).all(), df.n_bars.describe()
    kind = classify(df)
    found = df.eg_qvalue < FDR
    for y, x, beta, hl in PAIRS:
        r = row(df, y, x)
        assert r.eg_qvalue < FDR and r.hedge_ratio == pytest.approx(beta if r.y == y else 1 / beta, rel=0.2), \
            (y, x, r.eg_qvalue, r.hedge_ratio, run.stdout)
    assert not (found & (kind == "lookalike")).any(), df[kind == "lookalike"]
    assert not (found & (kind == "stable")).any()
    assert (found & (kind == "factor")).sum() <= FALSE_BUDGET, df[found & (kind == "factor")]
    top = run.stdout
    for y, x, _, _ in PAIRS:
        assert y in top and x in top


def test_demo_history_keeps_each_symbols_live_density_without_a_cliff(monkeypatch):
    """The day of history `ingestor.py --demo` serves (exchange built by `ingestor.demo_exchange`, now fixed):
    trades per hour against the live rate, per symbol. The newest 2 h 10 min are at the live rate; older hours
    fall smoothly (halving every 3 h) to 0.3x of it (a slow symbol: to 0.25 prints/s, DOGE's 0.5x), never a
    cliff, and the symbols keep their order and most of their skew (BTC trades ten times DOGE live, six times in
    the oldest hours). Before: every symbol printed 0.25/s there, BTC 20x fewer per hour than live, DOGE 2x, so
    one hour jumped 20x and BTC traded no more than DOGE."""
    import exchange.server as server
    from ingestor import DEMO_HISTORY_S, DEMO_UNIVERSE_HISTORY_S, demo_exchange

    now = 1_800_000_123_450_000
    monkeypatch.setattr(server, "_now_us", lambda: now)
    syms = ["BTCUSDT", "OPUSDT", "DOGEUSDT"]   # a major (1.0), a look-alike leg (0.4), a minor (0.1)
    ex = demo_exchange(syms, ("spot",), seed=7, rate=5.0, history_s=DEMO_UNIVERSE_HISTORY_S, universe=True)
    ex.pause()
    ex.start()
    try:
        age_h = {s: (pd.Timestamp(now, unit="us", tz="UTC") - ex.trades(s).ts).dt.total_seconds() // 3600
                 for s in syms}
    finally:
        ex.stop()
    live = {s: rate_scale(s) * 5.0 * 3600 for s in syms}                          # trades per hour at the live rate
    floor = ex.thin_factors()
    assert floor == pytest.approx({"BTCUSDT": 0.3, "OPUSDT": 0.3, "DOGEUSDT": 0.5})
    full_h = int(DEMO_HISTORY_S // 3600)
    for s in syms:
        per_hour = age_h[s].value_counts().sort_index().reindex(range(24), fill_value=0) / live[s]
        assert per_hour[:full_h].between(0.75, 1.3).all(), (s, per_hour.round(2).tolist())   # the live rate
        assert per_hour.between(0.2, 1.3).all(), (s, per_hour.round(2).tolist())            # never a trickle
        assert (per_hour[9:] / floor[s]).between(0.7, 1.4).all(), (s, per_hour.round(2).tolist())   # the floor
        step = per_hour.shift(-1) / per_hour                                                  # older / newer hour
        assert step.dropna().between(0.4, 1.6).all(), (s, step.round(2).tolist())            # no cliff
    old = {s: (age_h[s] >= 12).sum() for s in syms}
    assert old["BTCUSDT"] / old["DOGEUSDT"] == pytest.approx(6.0, rel=0.3)      # most of the live skew (10x)
    assert old["BTCUSDT"] / old["OPUSDT"] == pytest.approx(2.5, rel=0.3)
