"""The Screener page's engine: which pairs of a universe are cointegrated, computed off the script thread.

A screen (`ScreenSpec`: source, market, symbols, timeframe, lookback, FDR level) runs as a background job on one
process-wide worker thread (`st.cache_resource`), keyed by the spec and a refresh bucket of at least
`SCREEN_REFRESH_S`: every tab asking for the same screen in the same bucket shares one job, a page switch never
waits for a screen, and the page polls the job from a fragment (progress while it runs, the last finished result of
the same spec meanwhile). Jobs that no session asks for any more are skipped when their turn comes.

The maths is `quantlib.screen.screen_pairs`; the closes come from tickstore (hot ticks and the archive, resampled
in SQL). Filters (half-life, Hurst, correlation) are applied to the finished result in the script thread, so
changing them never re-runs a screen.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import streamlit as st

from core import legs as leglib
from core import timeframes
from dashboard.settings import LOOKBACKS, MAX_BARS, TIMEFRAMES
from tickstore import queries
from tickstore.connection import StoreBusy, StoreError, StoreMissing

log = logging.getLogger(__name__)

SCREEN_REFRESH_S = 60.0     # a screen is recomputed at most this often (or per sidebar refresh when slower)
ABANDON_S = 30.0            # a queued job nobody has polled for this long is skipped
KEEP_JOBS = 32              # finished jobs kept process-wide (oldest dropped first)
RETRY_S = 5.0               # a failed screen (file locked, missing) is tried again after this long
DISPLAY_ROWS = 500          # rows sent to the table (the CSV has every pair)
HEATMAP_SYMBOLS = 16        # symbols on the heat map: those of the best pairs that pass the filters
MIN_SYMBOLS = 2
RESULT_COLUMNS = ["y", "x", "n_bars", "corr", "hedge_ratio", "eg_stat", "eg_pvalue", "eg_qvalue", "half_life_bars",
                  "hurst", "verdict"]


# ---------------------------------------------------------------- what to screen, what to show
@dataclass(frozen=True)
class ScreenSpec:
    """One screen. `symbols` empty = every symbol of `market` in the source; `lookback_s` is already clipped to
    MAX_BARS bars of `timeframe` (`clipped` says so). `origin` is the file path or the upload's digest."""

    source: str
    origin: str
    market: str                   # one market, or several joined by commas (pairs across them: market:SYMBOL)
    symbols: tuple[str, ...]      # bare symbols for one market, market:SYMBOL legs for several
    timeframe: str
    lookback: str
    fdr: float
    lookback_s: int = 0
    clipped: bool = False

    @staticmethod
    def make(source: str, origin: str, market: str, symbols, timeframe: str, lookback: str, fdr: float
             ) -> "ScreenSpec":
        """Validate the controls; raises ValueError with what was expected."""
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}")
        if lookback not in LOOKBACKS:
            raise ValueError(f"unknown lookback {lookback!r}; expected one of {', '.join(LOOKBACKS)}")
        fdr = float(fdr)
        if not (math.isfinite(fdr) and 0.0 < fdr < 1.0):
            raise ValueError(f"FDR level {fdr:g} is out of range; expected a fraction between 0 and 1, e.g. 0.05")
        full = LOOKBACKS[lookback]
        cap = MAX_BARS * timeframes.seconds(timeframe)
        markets = [m for m in (market.split(",") if isinstance(market, str) else market) if m]
        if not markets:
            raise ValueError("no market chosen; expected at least one, e.g. spot")
        if len(markets) == 1:
            syms = tuple(sorted({str(s).upper() for s in symbols or ()}))
        else:
            try:
                legs = [leglib.parse_leg(str(s), markets[0]) for s in symbols or ()]
            except leglib.LegError as exc:
                raise ValueError(str(exc)) from None
            syms = tuple(sorted({leg.key for leg in legs if leg.market in markets}))
        return ScreenSpec(source, str(origin), ",".join(markets), syms, timeframe, lookback, round(fdr, 6),
                          min(full, cap), full > cap)

    @property
    def markets(self) -> tuple[str, ...]:
        return tuple(self.market.split(","))

    def symbols_of(self, market: str) -> tuple[str, ...] | None:
        """The chosen symbols of `market` (None = every symbol of it that traded)."""
        if not self.symbols:
            return None
        if len(self.markets) == 1:
            return self.symbols
        return tuple(leg.split(leglib.SEP, 1)[1] for leg in self.symbols if leg.split(leglib.SEP, 1)[0] == market)

    @property
    def tf_seconds(self) -> int:
        return timeframes.seconds(self.timeframe)

    def describe(self, n_symbols: int | None = None) -> str:
        uni = (f"{len(self.symbols)} chosen symbols" if self.symbols else
               f"all {n_symbols} symbols" if n_symbols is not None else "all symbols")
        return (f"{uni} of {' and '.join(self.markets)} · {self.timeframe} bars · lookback {self.lookback} · "
                f"FDR {self.fdr:g}")


@dataclass(frozen=True)
class Filters:
    """Row filters on a finished screen. `max_half_life` in bars (None = any); `min_corr` on return correlation."""

    max_half_life: float | None = None
    hurst_below_half: bool = False
    min_corr: float = 0.0
    cointegrated_only: bool = False

    @property
    def active(self) -> bool:
        return self.max_half_life is not None or self.hurst_below_half or self.min_corr > 0 or self.cointegrated_only


@dataclass(frozen=True)
class ScreenOutcome:
    """A finished screen: `result` (a `quantlib.screen.ScreenResult`) or, when there was nothing to screen, a
    `problem` (state for `ui.explain`, sentence). `start` / `end`: the window of bars read."""

    spec: ScreenSpec
    result: object | None
    problem: tuple[str, str] | None
    start: dt.datetime | None
    end: dt.datetime | None
    n_symbols: int
    n_bars: int
    elapsed_s: float
    finished_at: dt.datetime

    @property
    def pairs(self) -> pd.DataFrame:
        return self.result.pairs if self.result is not None else pd.DataFrame(columns=RESULT_COLUMNS)

    def summary(self) -> str:
        if self.result is None:
            return self.problem[1] if self.problem else "no result"
        r = self.result
        return (f"{r.n_pairs:,} pairs of {self.n_symbols} symbols × {self.n_bars:,} bars of {self.spec.timeframe}, "
                f"{r.n_tested:,} tested; {r.n_significant:,} significant at FDR {r.fdr:g} (Benjamini–Hochberg), "
                f"{r.n_cointegrated:,} cointegrated and stable; screened in {self.elapsed_s:.1f} s")


# ---------------------------------------------------------------- reading the closes
def window(end: dt.datetime, spec: ScreenSpec) -> tuple[dt.datetime, dt.datetime]:
    """[start, end] of the screen: `lookback` before `end` (the newest tick), start floored to the timeframe."""
    start = (pd.Timestamp(end) - pd.Timedelta(seconds=spec.lookback_s)).floor(f"{spec.tf_seconds}s")
    return start.to_pydatetime(), pd.Timestamp(end).to_pydatetime()


def closes_from_file(path: str, spec: ScreenSpec, symbols: tuple[str, ...] | None
                     ) -> tuple[pd.DataFrame, dt.datetime | None, dt.datetime | None]:
    """(closes, start, end): the close of every bar of the lookback window ending with the bar of the newest tick
    (rows = bar start UTC, one column per symbol, NaN where a symbol had no trade), read through tickstore over
    the hot file and the archive. `symbols` None = every symbol of the market that traded in the window."""
    if len(spec.markets) > 1:
        chosen = {m: (spec.symbols_of(m) if symbols is not None else None) for m in spec.markets}
        frame = queries.closes_wide_markets(spec.markets, chosen, spec.timeframe,
                                            dt.timedelta(seconds=spec.lookback_s), path=path)
    else:
        frame = queries.closes_wide(spec.market, symbols, spec.timeframe, dt.timedelta(seconds=spec.lookback_s),
                                    path=path)
    frame = frame.loc[:, frame.notna().any()]  # a chosen symbol without trades in the window is no column
    return frame, frame.attrs.get("start"), frame.attrs.get("end")


def closes_from_frames(frames: dict[str, pd.DataFrame], start: dt.datetime) -> pd.DataFrame:
    """The same wide closes from per-symbol bar frames (an upload)."""
    cols = {sym: f["close"].loc[f.index >= start] for sym, f in frames.items() if len(f)}
    cols = {sym: c for sym, c in cols.items() if len(c)}
    return pd.DataFrame(cols).sort_index() if cols else pd.DataFrame()


# ---------------------------------------------------------------- the screen itself
def run_screen(spec: ScreenSpec, closes: pd.DataFrame, start: dt.datetime | None, end: dt.datetime | None,
               progress: Callable[[float, str], None] | None = None) -> ScreenOutcome:
    """Screen `closes` (or explain why not: no data, one symbol, too few bars)."""
    from quantlib import screen  # scipy / statsmodels: on the worker thread, not in the page's import

    t0 = time.perf_counter()
    n_sym = int(closes.shape[1]) if not closes.empty else 0
    n_bars = int(len(closes))

    def done(result=None, problem=None) -> ScreenOutcome:
        return ScreenOutcome(spec, result, problem, start, end, n_sym, n_bars, time.perf_counter() - t0,
                             dt.datetime.now(dt.UTC))

    where = f"the last {spec.lookback} of the {' and '.join(spec.markets)} data"
    if n_sym == 0:
        return done(problem=("no-data", f"No trades of the chosen symbols in {where}. Pick a longer lookback, "
                                        "another market or other symbols."))
    if n_sym < MIN_SYMBOLS:
        only = closes.columns[0]
        return done(problem=("no-data", f"Only {only} traded in {where}: a screen needs at least two symbols. "
                                        "Pick more symbols (or all), a longer lookback or another market."))
    need = screen.DEFAULT_MIN_BARS
    if n_bars < need:
        return done(problem=("short", f"Only {n_bars} bars of {spec.timeframe} in {where}; the screen needs at least "
                                      f"{need} per pair. Pick a longer lookback or a finer timeframe."))
    if progress:
        progress(0.05, f"screening {n_sym * (n_sym - 1) // 2:,} pairs of {n_sym} symbols × {n_bars:,} bars")
    def step(done_pairs: int, total: int) -> None:
        if progress:
            progress(0.05 + 0.95 * done_pairs / max(total, 1), f"screened {done_pairs:,} of {total:,} pairs")

    result = screen.screen_pairs(closes, fdr=spec.fdr, progress=step)
    pairs = result.pairs
    if len(pairs) and pairs["eg_qvalue"].isna().all():
        longest = int(pairs["n_bars"].max()) if "n_bars" in pairs else 0
        return done(result, ("short", f"No pair has enough overlapping bars to test (at most {longest} of "
                                      f"{spec.timeframe}, need {need}). Pick a longer lookback or a finer timeframe."))
    return done(result)


# ---------------------------------------------------------------- background jobs (process-wide)
@dataclass
class Job:
    """One screen request. `state`: queued | reading | screening | done | failed | skipped."""

    key: tuple
    spec: ScreenSpec
    state: str = "queued"
    progress: float = 0.0
    stage: str = "waiting for the screener"
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    ended: float | None = None
    seen: float = field(default_factory=time.monotonic)
    outcome: ScreenOutcome | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "skipped")

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - (self.started or self.submitted)


class Board:
    """Screen jobs shared by every session of this server: one worker thread, latest finished result per spec."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[tuple, Job] = {}
        self._last_done: dict[ScreenSpec, Job] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tickdesk-screen")

    def request(self, spec: ScreenSpec, bucket: int, load: Callable[[], tuple[pd.DataFrame, dt.datetime | None,
                                                                              dt.datetime | None]]) -> Job:
        """The job for (spec, bucket), submitted if new; `load` reads the closes (on the worker)."""
        key = (spec, bucket)
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.state == "skipped" or (
                    job.state == "failed" and time.monotonic() - (job.ended or 0.0) > RETRY_S):
                job = Job(key, spec)
                self._jobs[key] = job
                self._pool.submit(self._run, job, load)
                self._trim()
            job.seen = time.monotonic()
            return job

    def last_done(self, spec: ScreenSpec) -> Job | None:
        """The newest finished job of `spec` (any bucket), to show while a fresher one runs."""
        with self._lock:
            return self._last_done.get(spec)

    def _trim(self) -> None:
        done = [k for k, j in self._jobs.items() if j.finished]
        for k in done[: max(0, len(self._jobs) - KEEP_JOBS)]:
            del self._jobs[k]
        while len(self._last_done) > KEEP_JOBS:
            del self._last_done[next(iter(self._last_done))]

    def _run(self, job: Job, load) -> None:
        if time.monotonic() - job.seen > ABANDON_S:
            job.state, job.stage = "skipped", "nobody is waiting for it any more"
            return
        job.started = time.monotonic()

        def progress(frac: float, stage: str) -> None:
            job.progress, job.stage = max(job.progress, min(1.0, frac)), stage

        try:
            job.state = "reading"
            progress(0.01, "reading closes")
            closes, start, end = load()
            job.state = "screening"
            job.outcome = run_screen(job.spec, closes, start, end, progress)
            job.state, job.progress, job.stage = "done", 1.0, "done"
        except StoreBusy:
            job.state, job.error = "failed", "The ingestor held the file lock for the whole read; retrying soon."
        except StoreMissing as exc:
            job.state, job.error = "failed", str(exc)
        except StoreError as exc:
            job.state, job.error = "failed", str(exc)
        except Exception as exc:  # the page explains it; never a traceback in the browser
            log.exception("screen %s failed", job.spec)
            job.state, job.error = "failed", f"The screen failed on this data ({type(exc).__name__}: {exc})."
        finally:
            job.ended = time.monotonic()
            if job.state == "done":
                with self._lock:
                    self._last_done.pop(job.spec, None)
                    self._last_done[job.spec] = job


@st.cache_resource(show_spinner=False)
def board() -> Board:
    """The process-wide job board (created once per server process)."""
    return Board()


def bucket(refresh_s: float) -> int:
    """Screens refresh at most every SCREEN_REFRESH_S (longer when the sidebar refresh is slower)."""
    every = max(float(refresh_s), SCREEN_REFRESH_S)
    return int(time.time() // every)


# ---------------------------------------------------------------- filtering, table, heat map
def apply_filters(pairs: pd.DataFrame, f: Filters, fdr: float) -> pd.DataFrame:
    """Pairs passing the filters, best first (the screen's order)."""
    keep = pd.Series(True, index=pairs.index)
    if f.max_half_life is not None:
        keep &= pairs["half_life_bars"] <= f.max_half_life
    if f.hurst_below_half:
        keep &= pairs["hurst"] < 0.5
    if f.min_corr > 0:
        keep &= pairs["corr"] >= f.min_corr
    if f.cointegrated_only:
        keep &= pairs["cointegrated"] if "cointegrated" in pairs else pairs["eg_qvalue"] <= fdr
    return pairs.loc[keep.fillna(False).astype(bool)]


def table(pairs: pd.DataFrame, tf_seconds: int, limit: int = DISPLAY_ROWS) -> pd.DataFrame:
    """The best `limit` rows for display, with the half-life also as a duration (minutes)."""
    out = pairs.head(limit).reset_index(drop=True)
    cols = ["y", "x", "eg_qvalue", "half_life_bars", "half_life_min", "hurst", "hedge_ratio", "corr", "n_bars",
            "eg_stat", "eg_pvalue", "verdict"]
    out = out.assign(half_life_min=out["half_life_bars"] * tf_seconds / 60.0)
    return out[[c for c in cols if c in out.columns]]


TABLE_COLUMNS = {
    "y": st.column_config.TextColumn("Y", help="Dependent leg: spread = Y − β·X − α"),
    "x": st.column_config.TextColumn("X", help="Hedge leg"),
    "eg_qvalue": st.column_config.NumberColumn("q-value", format="%.2g",
                                               help="Engle–Granger p-value adjusted for the number of pairs screened "
                                                    "(Benjamini–Hochberg false discovery rate)"),
    "half_life_bars": st.column_config.NumberColumn("Half-life (bars)", format="%.1f",
                                                    help="Bars for a deviation of the spread to halve"),
    "half_life_min": st.column_config.NumberColumn("Half-life (min)", format="%.1f"),
    "hurst": st.column_config.NumberColumn("Hurst", format="%.2f", help="Of the spread: < 0.5 mean-reverting"),
    "hedge_ratio": st.column_config.NumberColumn("β", format="%.4f", help="OLS hedge ratio of log Y on log X"),
    "corr": st.column_config.NumberColumn("Correlation", format="%.2f", help="Of bar log returns"),
    "n_bars": st.column_config.NumberColumn("Bars", format="%d", help="Bars where both legs traded"),
    "eg_stat": st.column_config.NumberColumn("EG stat", format="%.2f"),
    "eg_pvalue": st.column_config.NumberColumn("p-value", format="%.2g", help="Engle–Granger (MacKinnon), one pair"),
    "verdict": st.column_config.TextColumn("Verdict", width="large"),
}


def heatmap_frame(pairs: pd.DataFrame, shown: pd.DataFrame, n_symbols: int = HEATMAP_SYMBOLS
                  ) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(−log10 q, q) over the symbols of the best `shown` pairs (at most `n_symbols`), symmetric, NaN on the
    diagonal and where a pair was not testable. None when fewer than two symbols."""
    order: list[str] = []
    for y, x in zip(shown["y"], shown["x"]):
        for sym in (y, x):
            if sym not in order and len(order) < n_symbols:
                order.append(sym)
        if len(order) >= n_symbols:
            break
    if len(order) < 2:
        return None
    sub = pairs[pairs["y"].isin(order) & pairs["x"].isin(order)]
    pos = {sym: i for i, sym in enumerate(order)}
    i, j = sub["y"].map(pos).to_numpy(int), sub["x"].map(pos).to_numpy(int)
    m = np.full((len(order), len(order)), np.nan)
    m[i, j] = m[j, i] = sub["eg_qvalue"].to_numpy(float)
    q = pd.DataFrame(m, index=order, columns=order)
    return -np.log10(q.clip(lower=1e-12)), q


def csv_bytes(outcome: ScreenOutcome) -> bytes:
    """Every screened pair, best first (the scanner's `--out` columns first)."""
    from dashboard import export

    return export.to_csv(outcome.pairs)


def csv_name(spec: ScreenSpec, end: dt.datetime | None) -> str:
    from dashboard import export

    return export.filename("pairs", spec.market, spec.timeframe, spec.lookback, end)
