"""tickdesk pair scanner: screen every unordered pair of a market's symbols for cointegration (see README).

    python scanner.py --db data/ticks.duckdb [--market spot|usdm|spot,usdm] [--symbols a,b,...] [--timeframe 1m]
                      [--lookback 24h] [--end ISO-TIME] [--fdr 0.05] [--top 20] [--out pairs.csv]
                      [--dask tcp://HOST:8786]

Closes come from `tickstore.queries.closes_wide` (resampled in SQL, hot ticks and the Parquet archive alike); the
screen is `quantlib.screen`, run chunk by chunk in this process or, with `--dask`, on an existing Dask cluster
(the closes are scattered once, chunks mapped, raw rows gathered); Benjamini–Hochberg and the ranking always run
here, over all pairs. stdout: the top rows as a table and a summary line; stderr: log lines and progress.
Bad input → one error line on stderr, exit code 2.

Several markets (`--market spot,usdm`) screen the union of their symbols on one window: columns and the `y` / `x`
of each pair are then `market:SYMBOL` (spot against perpetual BTCUSDT is a pair like any other); `--symbols` may
name legs (`usdm:btcusdt`) or bare symbols, which stand for that symbol in every chosen market.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.logs import LEVELS
from core.timeframes import SECONDS as TIMEFRAMES

if TYPE_CHECKING:
    import pandas as pd

EXIT_BAD_INPUT = 2
# `ticks.market` values: the live markets and the id spaces of imported dumps (history.dumps.STORE_MARKETS).
KNOWN_MARKETS = ("spot", "usdm", "spot_agg", "usdm_trades")
POOL_MIN_PAIRS = 20_000       # auto --workers: smaller scans run in this process (see local_workers)
MAX_BARS = 1_000_000          # bars per symbol in one scan (memory: bars x symbols x 8 bytes, several copies)
CHUNK_PAIRS = 2_000            # pairs per chunk: progress granularity and the unit of work sent to a Dask worker

log = logging.getLogger("scanner")


class BadInput(Exception):
    """Input the scan cannot run on; the message says what was wrong and what is expected."""


class ScanFailed(Exception):
    """The scan broke off for a reason outside the input (a Dask worker or scheduler lost); exit code 1."""


# --------------------------------------------------------------------------------------------- arguments

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):          # one line, not usage + error
        raise BadInput(f"{message} (see python scanner.py --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="scanner.py", description="Screen every pair of a market's symbols for cointegration.")
    p.add_argument("--db", default=None, help="DuckDB tick file (default $TICKDESK_DB, else data/ticks.duckdb)")
    p.add_argument("--market", default="spot",
                   help=f"market(s) of the ticks: {', '.join(KNOWN_MARKETS)}, or several separated by commas such as "
                        "spot,usdm (pairs across markets, named market:SYMBOL; default spot)")
    p.add_argument("--symbols", default=None,
                   help="comma-separated symbols, e.g. btcusdt,ethusdt,solusdt (default: every symbol of the market "
                        "that traded in the window)")
    p.add_argument("--timeframe", default="1m", help=f"bar length of the closes: {', '.join(TIMEFRAMES)} (default 1m)")
    p.add_argument("--lookback", default="24h", help="window length, e.g. 6h, 24h, 7d (default 24h)")
    p.add_argument("--end", default=None,
                   help="window end, ISO time such as 2024-05-01T12:00Z (UTC when no offset is given); default: the "
                        "end of the bar holding the newest stored tick of the chosen symbols")
    p.add_argument("--fdr", default="0.05", help="false discovery rate for the Benjamini-Hochberg verdict (default 0.05)")
    p.add_argument("--min-bars", default=None,
                   help="fewest bars two symbols must share for their pair to be tested (default: the screen's, 100)")
    p.add_argument("--top", default="20", help="rows shown on stdout (default 20; 0 = summary only)")
    p.add_argument("--out", default=None, help="write every pair, best first, to this CSV file")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run the screen on an existing Dask cluster, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--dask-timeout", default="10s", help="how long to try to reach the --dask scheduler (default 10s)")
    p.add_argument("--workers", default="auto",
                   help="local processes for the screen: auto (this process for small scans, one per core for "
                        "large ones) or a number; ignored with --dask")
    p.add_argument("--chunk-pairs", default=str(CHUNK_PAIRS),
                   help=f"pairs per unit of work (a progress step, a task on a worker; default {CHUNK_PAIRS})")
    p.add_argument("--log-level", default="INFO", choices=LEVELS)
    return p


@dataclass(frozen=True)
class ScanConfig:
    """Validated command line."""

    db: Path
    market: str                        # one market, or several joined by commas
    symbols: tuple[str, ...] | None    # bare symbols for one market, market:SYMBOL legs for several
    timeframe: str
    lookback: dt.timedelta
    end: dt.datetime | None
    fdr: float
    top: int
    out: Path | None
    dask: str | None
    dask_timeout_s: float = 10.0
    min_bars: int | None = None
    workers: int | None = None         # None = auto
    chunk_pairs: int = CHUNK_PAIRS

    @property
    def markets(self) -> tuple[str, ...]:
        return tuple(self.market.split(","))

    def symbols_of(self, market: str) -> tuple[str, ...] | None:
        """The chosen symbols of `market` (None = all that traded)."""
        if self.symbols is None:
            return None
        if len(self.markets) == 1:
            return self.symbols
        return tuple(s.split(":", 1)[1] for s in self.symbols if s.split(":", 1)[0] == market)


def parse_end(text: str) -> dt.datetime:
    """ISO-8601 date or time; UTC unless it carries an offset."""
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"--end {text!r} is not a time; expected ISO-8601 such as 2024-05-01T12:00Z or 2024-05-01") \
            from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def parse_symbols(text: str) -> tuple[str, ...]:
    """'btcusdt, ethusdt' → ('BTCUSDT', 'ETHUSDT'), duplicates dropped; BadInput naming the bad ones."""
    from core.symbols import SymbolError
    from core.symbols import parse_symbols as parse

    try:
        return tuple(parse(text))
    except SymbolError as exc:
        raise BadInput(f"--symbols: {exc}") from None


def parse_markets(text: str) -> str:
    """'spot, USDM' → 'spot,usdm' (each a known market, duplicates dropped); BadInput otherwise."""
    markets = list(dict.fromkeys(m.strip().lower() for m in (text or "").split(",") if m.strip()))
    bad = [m for m in markets if m not in KNOWN_MARKETS]
    if not markets or bad:
        raise BadInput(f"unknown market {(', '.join(bad) if bad else text)!r}; expected one of "
                       f"{', '.join(KNOWN_MARKETS)}, or several separated by commas such as spot,usdm")
    return ",".join(markets)


def parse_leg_symbols(text: str, markets: Sequence[str]) -> tuple[str, ...]:
    """--symbols for several markets: 'btcusdt,usdm:ethusdt' → market:SYMBOL legs (a bare symbol in every
    chosen market); BadInput naming bad legs or legs of markets not chosen."""
    from core.legs import LegError, parse_leg

    out: list[str] = []
    for part in [p.strip() for p in (text or "").split(",") if p.strip()]:
        try:
            legs = [parse_leg(part, markets[0])] if ":" in part else [parse_leg(part, m) for m in markets]
        except LegError as exc:
            raise BadInput(f"--symbols: {exc}") from None
        for leg in legs:
            if leg.market not in markets:
                raise BadInput(f"--symbols: {part!r} is of market {leg.market}, which --market "
                               f"{','.join(markets)} does not include")
            out.append(leg.key)
    if not out:
        raise BadInput("--symbols: no symbols given; expected a comma-separated list such as btcusdt,usdm:btcusdt")
    return tuple(dict.fromkeys(out))


def parse_config(args: argparse.Namespace) -> ScanConfig:
    from core.durations import DurationError, parse_duration
    from core.paths import default_db_path
    from core.timeframes import seconds as tf_seconds

    market = parse_markets(args.market)
    try:
        step = tf_seconds(args.timeframe)
    except ValueError as exc:
        raise BadInput(f"--timeframe: {exc}") from None
    try:
        lookback_s = parse_duration(args.lookback, ("s", "m", "h", "d", "w"))
    except DurationError as exc:
        raise BadInput(f"--lookback: {exc}") from None
    try:
        dask_timeout_s = parse_duration(args.dask_timeout)
    except DurationError as exc:
        raise BadInput(f"--dask-timeout: {exc}") from None
    several = "," in market
    symbols = None if args.symbols is None else (parse_leg_symbols(args.symbols, market.split(",")) if several
                                                 else parse_symbols(args.symbols))
    if lookback_s < 2 * step:
        raise BadInput(f"--lookback {args.lookback} holds fewer than two {args.timeframe} bars; "
                       f"expected at least {2 * step}s, e.g. 24h")
    if lookback_s / step > MAX_BARS:
        raise BadInput(f"--lookback {args.lookback} is {lookback_s / step:,.0f} {args.timeframe} bars; at most "
                       f"{MAX_BARS:,} per scan: choose a longer --timeframe or a shorter --lookback")
    if symbols is not None and len(symbols) < 2:
        raise BadInput(f"--symbols names {len(symbols)} symbol; a pair screen needs at least two")
    try:
        fdr = float(args.fdr)
    except ValueError:
        fdr = math.nan
    if not 0.0 < fdr < 1.0:
        raise BadInput(f"--fdr {args.fdr!r} is not a rate; expected a number between 0 and 1 such as 0.05")
    try:
        top = int(args.top)
    except ValueError:
        top = -1
    if top < 0:
        raise BadInput(f"--top {args.top!r} is not a row count; expected a whole number >= 0 such as 20")
    min_bars = None
    if args.min_bars is not None:
        from quantlib.screen import MIN_BARS_FLOOR

        try:
            min_bars = int(args.min_bars)
        except ValueError:
            min_bars = -1
        if min_bars < MIN_BARS_FLOOR:
            raise BadInput(f"--min-bars {args.min_bars!r} is too small; expected a whole number >= {MIN_BARS_FLOOR}")
    workers = None
    if args.workers.strip().lower() != "auto":
        try:
            workers = int(args.workers)
        except ValueError:
            workers = 0
        if workers < 1:
            raise BadInput(f"--workers {args.workers!r} is not a process count; expected auto or a whole number >= 1")
    try:
        chunk_pairs = int(args.chunk_pairs)
    except ValueError:
        chunk_pairs = 0
    if chunk_pairs < 1:
        raise BadInput(f"--chunk-pairs {args.chunk_pairs!r} is not a pair count; expected a whole number >= 1")
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.is_dir():
            raise BadInput(f"--out {out} is a directory; expected a CSV file path")
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise BadInput(f"--out: directory {parent} does not exist or is not writable")
    dask = args.dask.strip() if args.dask is not None else None
    if dask is not None and not dask.split("://", 1)[-1]:
        raise BadInput(f"--dask {args.dask!r} is not a scheduler address; expected e.g. tcp://127.0.0.1:8786")
    return ScanConfig(db=Path(args.db) if args.db else default_db_path(), market=market, symbols=symbols,
                      timeframe=args.timeframe, lookback=dt.timedelta(seconds=lookback_s),
                      end=parse_end(args.end) if args.end is not None else None, fdr=fdr, top=top, out=out, dask=dask,
                      dask_timeout_s=dask_timeout_s, min_bars=min_bars,
                      workers=workers, chunk_pairs=chunk_pairs)


# --------------------------------------------------------------------------------------------- data

def load_closes(cfg: ScanConfig) -> pd.DataFrame:
    """Closes of the chosen symbols over the window; BadInput when the file, market or symbols cannot be screened."""
    from tickstore.connection import StoreError
    from tickstore.queries import closes_wide_markets, stored_symbols

    if cfg.db.is_dir():
        raise BadInput(f"--db {cfg.db} is a directory; expected a DuckDB tick file")
    try:
        catalog = stored_symbols(path=cfg.db)
        markets = sorted(set(catalog["market"]))
        for market in cfg.markets:
            if market not in markets:
                held = f"it holds {', '.join(markets)}" if markets else "it holds no ticks"
                raise BadInput(f"no {market} ticks in {cfg.db}; {held}")
            known = set(catalog.loc[catalog["market"] == market, "symbol"])
            chosen = cfg.symbols_of(market)
            if chosen is not None:
                unknown = [s for s in chosen if s not in known]
                if unknown:
                    raise BadInput(f"unknown symbol(s) {', '.join(unknown)}: no {market} ticks stored for them in "
                                   f"{cfg.db} (it has {_few(sorted(known))})")
        t0 = time.perf_counter()
        closes = closes_wide_markets(cfg.markets, {m: cfg.symbols_of(m) for m in cfg.markets}, cfg.timeframe,
                                     cfg.lookback, cfg.end, path=cfg.db)
    except StoreError as exc:
        raise BadInput(str(exc)) from None
    start, end = closes.attrs["start"], closes.attrs["end"]
    window = f"{start:%Y-%m-%d %H:%M}Z to {end:%Y-%m-%d %H:%M}Z" if end is not None and start is not None else ""
    traded = [c for c in closes.columns if closes[c].notna().any()]
    if not traded:
        raise BadInput(f"no {cfg.market} ticks of {'those symbols' if cfg.symbols else 'any symbol'} in the window "
                       f"{window}; choose another --end or a longer --lookback")
    if len(traded) < 2:
        raise BadInput(f"only {traded[0]} traded in the window {window}; a pair screen needs at least two symbols")
    idle = [c for c in closes.columns if c not in traded]
    if idle:
        log.warning("no trades of %s in the window; their pairs are reported with 0 bars", ", ".join(idle))
    log.info("%d %s symbols, %d %s bars from %s (%.2fs)", closes.shape[1], cfg.market, len(closes), cfg.timeframe,
             window, time.perf_counter() - t0)
    return closes


def _few(names: Sequence[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "") if names else "none"


# --------------------------------------------------------------------------------------------- screening

class Progress:
    """Chunks done / total and the pair rate, as a log line at most every `every_s` seconds and at the end."""

    def __init__(self, chunks: int, pairs: int, every_s: float = 1.0):
        self.chunks, self.pairs, self.every_s = chunks, pairs, every_s
        self.done_chunks = self.done_pairs = 0
        self.t0 = self._last = time.perf_counter()

    def advance(self, pairs: int) -> None:
        self.done_chunks += 1
        self.done_pairs += pairs
        now = time.perf_counter()
        if self.done_chunks == self.chunks or now - self._last >= self.every_s:
            self._last = now
            rate = self.done_pairs / max(now - self.t0, 1e-9)
            eta = (self.pairs - self.done_pairs) / rate if rate > 0 else math.inf
            log.info("screened %d/%d chunks (%d/%d pairs), %.0f pairs/s%s", self.done_chunks, self.chunks,
                     self.done_pairs, self.pairs, rate, f", ~{eta:.0f}s left" if self.done_pairs < self.pairs else "")

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0


def screen_local(closes: pd.DataFrame, chunks: Sequence, progress: Progress, options: dict) -> list[pd.DataFrame]:
    """Each chunk in this process, one after the other (the screen is vectorised across a chunk's pairs)."""
    from quantlib.screen import screen_chunk

    raws = []
    for chunk in chunks:
        raws.append(screen_chunk(closes, chunk, **options))
        progress.advance(len(chunk))
    return raws


_POOL_CLOSES = None


def _pool_init(closes: pd.DataFrame) -> None:
    global _POOL_CLOSES
    _POOL_CLOSES = closes


def _pool_chunk(chunk: list, options: dict) -> pd.DataFrame:
    from quantlib.screen import screen_chunk

    return screen_chunk(_POOL_CLOSES, chunk, **options)


def screen_pool(closes: pd.DataFrame, chunks: Sequence, progress: Progress, options: dict,
                workers: int) -> list[pd.DataFrame]:
    """The chunks over `workers` fresh processes (spawned: no inherited threads or DuckDB state); each receives
    the closes once, at start-up."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pool_init, initargs=(closes,)) as pool:
        futures = {pool.submit(_pool_chunk, chunk, options): len(chunk) for chunk in chunks}
        for fut in as_completed(futures):
            fut.result()
            progress.advance(futures[fut])
        return [fut.result() for fut in futures]


def local_workers(requested: int | None, n_pairs: int, n_chunks: int) -> int:
    """Processes for a local scan: `requested`, or (auto) 1 = this process for scans below POOL_MIN_PAIRS, where
    starting workers costs more than it saves, else one per available core (at most one per chunk)."""
    if requested is not None:
        return max(1, min(requested, n_chunks))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if n_pairs < POOL_MIN_PAIRS else max(1, min(cores, n_chunks))


def connect_dask(address: str, timeout_s: float = 10.0):
    """A `distributed.Client` on an existing scheduler; BadInput when it cannot be reached or its workers cannot
    run the screen."""
    try:
        from distributed import Client
    except ImportError:
        raise BadInput("--dask needs the `distributed` package (pip install -r requirements.txt)") from None
    try:
        client = Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BadInput(f"cannot reach the Dask scheduler at {address} ({_one_line(exc)}); "
                       "expected the address of a running `dask scheduler`, e.g. tcp://127.0.0.1:8786") from None
    try:
        workers = client.scheduler_info().get("workers", {})
        if not workers:
            client.wait_for_workers(1, timeout=timeout_s)
        client.submit(_probe_worker, pure=False).result(timeout=60)
    except Exception as exc:  # noqa: BLE001 - anything here means the cluster cannot run the scan
        client.close()
        raise BadInput(f"the Dask cluster at {address} cannot run the screen ({_one_line(exc)}); its workers need "
                       "this project importable (start them from the tickdesk directory or with PYTHONPATH)") from None
    return client


def _probe_worker() -> bool:
    import quantlib.screen  # noqa: F401 - the workers must be able to import the screen

    return True


def screen_dask(client, closes: pd.DataFrame, chunks: Sequence, progress: Progress,
                options: dict) -> list[pd.DataFrame]:
    """Scatter the closes once, map the chunks over the cluster's workers, gather the raw rows in chunk order."""
    from distributed import as_completed

    from quantlib.screen import screen_chunk

    [closes_f] = client.scatter([closes], broadcast=True)
    futures = client.map(screen_chunk, [closes_f] * len(chunks), list(chunks), pure=False, **options)
    size = {f.key: len(c) for f, c in zip(futures, chunks)}
    try:
        for fut in as_completed(futures, loop=client.loop):
            if fut.status == "error":
                fut.result()                 # raises the worker's exception here
            progress.advance(size[fut.key])
        return client.gather(futures)
    except Exception as exc:  # noqa: BLE001 - a lost worker or scheduler: say so in one line
        raise ScanFailed(f"the scan on the Dask cluster failed: {type(exc).__name__}: {_one_line(exc)}") from exc


def run_screen(closes: pd.DataFrame, cfg: ScanConfig, client=None):
    """Screen every pair of `closes`' columns; BH over all of them; returns quantlib.screen.ScreenResult."""
    import pandas as pd

    from quantlib.screen import finalize_screen, pair_chunks

    chunks = list(pair_chunks(list(closes.columns), cfg.chunk_pairs))
    n_pairs = sum(len(c) for c in chunks)
    workers = local_workers(cfg.workers, n_pairs, len(chunks)) if client is None else 0
    where = (f"on {cfg.dask}" if client is not None else f"in {workers} local processes" if workers > 1
             else "in this process")
    log.info("screening %d pairs of %d symbols in %d chunk(s) %s", n_pairs, closes.shape[1], len(chunks), where)
    if client is None and workers == 1:
        import scipy.special  # noqa: F401 - the screen imports these on first use; keep that out of the pair rate
        import statsmodels.tsa.adfvalues  # noqa: F401
    progress = Progress(len(chunks), n_pairs)
    options = {"min_bars": cfg.min_bars} if cfg.min_bars is not None else {}
    if client is not None:
        raws = screen_dask(client, closes, chunks, progress, options)
    elif workers > 1:
        raws = screen_pool(closes, chunks, progress, options, workers)
    else:
        raws = screen_local(closes, chunks, progress, options)
    result = finalize_screen(pd.concat(raws, ignore_index=True), cfg.fdr, n_symbols=closes.shape[1],
                             market=cfg.market, timeframe=cfg.timeframe, start=closes.attrs["start"],
                             end=closes.attrs["end"], n_bars=len(closes), **options)
    log.info("screened %d pairs in %.2fs (%.0f pairs/s)", n_pairs, progress.elapsed_s,
             n_pairs / max(progress.elapsed_s, 1e-9))
    return result


# --------------------------------------------------------------------------------------------- output

def format_table(pairs: pd.DataFrame) -> str:
    """The contract columns as an aligned text table: numbers right, words left, p/q-values in scientific
    notation when small."""
    import pandas as pd

    def pval(v: float) -> str:
        return f"{v:.4f}" if v >= 1e-3 else f"{v:.1e}"

    def num(fmt: str) -> Callable[[float], str]:
        return lambda v: format(v, fmt)

    columns: list[tuple[str, Callable, bool]] = [        # name, formatter, left-aligned
        ("y", str, True), ("x", str, True), ("n_bars", num("d"), False), ("corr", num(".3f"), False),
        ("hedge_ratio", num(".4g"), False), ("eg_stat", num(".2f"), False), ("eg_pvalue", pval, False),
        ("eg_qvalue", pval, False), ("half_life_bars", num(".1f"), False), ("hurst", num(".2f"), False),
        ("verdict", str, True)]
    cells = [["#", *map(str, range(1, len(pairs) + 1))]]
    lefts = [False]
    for name, fmt, left in columns:
        cells.append([name, *("" if pd.isna(v) else fmt(v) for v in pairs[name].tolist())])
        lefts.append(left)
    widths = [max(map(len, col)) for col in cells]
    lines = []
    for r in range(len(pairs) + 1):
        row = [col[r].ljust(w) if left else col[r].rjust(w) for col, w, left in zip(cells, widths, lefts)]
        lines.append("  ".join(row).rstrip())
    return "\n".join(lines)


def csv_frame(result, cfg: ScanConfig) -> pd.DataFrame:
    """`result.pairs` (contract columns first, best first) plus the scan's market, timeframe and UTC window on
    every row, so a saved file says what it screened."""
    meta = result.meta
    return result.pairs.assign(market=cfg.market, timeframe=cfg.timeframe,
                               window_start=_iso(meta["start"]), window_end=_iso(meta["end"]))


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_csv(pairs: pd.DataFrame, out: Path) -> None:
    """Every pair, best first; written to a temp file and renamed, so a failed run never leaves half a CSV."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        pairs.to_csv(tmp, index=False)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BadInput(f"cannot write --out {out}: {exc.strerror or exc}") from None


def summary_line(result, closes: pd.DataFrame, cfg: ScanConfig) -> str:
    """The screen's own summary line plus the window it covered."""
    head = result.summary(n=0).splitlines()[0]
    return (f"{head}; {cfg.market} {cfg.timeframe} closes, {len(closes)} bars from "
            f"{_iso(closes.attrs['start'])} to {_iso(closes.attrs['end'])}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    from core.logs import setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    level = "INFO"
    client = None
    try:
        args = parser.parse_args(argv)
        level = args.log_level
        setup_logging(level)
        cfg = parse_config(args)
        if cfg.dask is not None:
            client = connect_dask(cfg.dask, cfg.dask_timeout_s)
        closes = load_closes(cfg)
        result = run_screen(closes, cfg, client)
        if cfg.out is not None:
            write_csv(csv_frame(result, cfg), cfg.out)
            log.info("wrote %d pairs to %s", result.n_pairs, cfg.out)
        if cfg.top:
            print(format_table(result.top(cfg.top)))
        print(summary_line(result, closes, cfg))
        return 0
    except BadInput as exc:
        setup_logging(level)
        log.error("%s", exc)
        return EXIT_BAD_INPUT
    except ScanFailed as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; nothing written")
        return 130
    finally:
        if client is not None:
            client.close()


if __name__ == "__main__":
    sys.exit(main())
