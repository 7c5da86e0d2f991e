"""tickdesk ingestor: stream every Binance trade into a DuckDB file (see README and ../shared/DESIGN.md).

    python ingestor.py (--symbols btcusdt,ethusdt | --top N | both) [--market spot|usdm|spot,usdm]
                       [--db data/ticks.duckdb] [--ws-url BASE] [--rest-url BASE] [--flush-ms 250] [--demo]
                       [--streams-per-connection 200] [--log-level INFO] [--ready-file PATH]
    python ingestor.py import PATH... [--db PATH] [--market spot|usdm]
    python ingestor.py archive --older-than 7d [--db PATH] [--archive-dir data/archive]
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from core.durations import DurationError, parse_duration
from core.logs import LEVELS, setup_logging
from core.paths import DEFAULT_DB, DEMO_DB
from core.symbols import SymbolError, parse_symbols
from feed.binance import DEFAULT_STREAMS_PER_CONNECTION

EXIT_BAD_INPUT = 2
EXIT_TICKS_LOST = 3  # stopped, but ticks held in memory could not be written (the log says how many)

DEMO_HISTORY_S = 2 * 3600.0  # --demo history at the full rate
DEMO_UNIVERSE_HISTORY_S = 24 * 3600.0  # --demo with the universe: a day, so the screener finds every designed pair


def demo_exchange(symbols: list[str], markets: tuple[str, ...], *, seed: int, rate: float, history_s: float,
                  universe: bool):
    """The local exchange of `--demo` (not started): `history_s` plus 10 minutes of history; with the universe,
    prints older than DEMO_HISTORY_S (+10 min) come at a rate that falls smoothly (halving every 3 h) to 0.3x the
    live one, every symbol alike (exchange.server, `thin_profile`): a day for the screener without a day of
    full-rate prints to load, and no activity cliff for a trader scrolling back."""
    from exchange.server import LocalExchange
    from exchange.universe import rate_scale

    # our own exchange: a generous weight limit so the demo's history loads in seconds
    return LocalExchange(symbols=symbols, markets=markets, seed=seed, rate=rate,
                         rate_scale={s: rate_scale(s) for s in symbols}, history_seconds=history_s + 600,
                         weight_limit=1_000_000, thin_history_after=DEMO_HISTORY_S + 600 if universe else 0.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ingestor.py", description="Stream Binance trades into a DuckDB tick file.",
                                epilog="subcommands: `import PATH...` (Binance public-data dumps), "
                                       "`archive --older-than 7d` (roll old ticks to Parquet)")
    p.add_argument("--symbols", default=None,
                   help="comma-separated, e.g. btcusdt,ethusdt (default btcusdt,ethusdt; with --demo the simulated "
                        "universe of 24 symbols, see exchange/universe.py)")
    p.add_argument("--top", default=None, metavar="N",
                   help="the N most traded USDT symbols of each --market by 24 h quote volume (TRADING only), "
                        "read from the exchange at start; added to --symbols when both are given")
    p.add_argument("--market", default="spot",
                   help="spot (trades), usdm (USD-M futures aggTrades), or spot,usdm for both in one process")
    p.add_argument("--streams-per-connection", type=int, default=DEFAULT_STREAMS_PER_CONNECTION, metavar="N",
                   help=f"streams carried by one WebSocket connection at most; more symbols are spread over several "
                        f"connections (default {DEFAULT_STREAMS_PER_CONNECTION}; Binance allows 1024, see "
                        f"docs/binance-limits.md)")
    p.add_argument("--status-check", default="60s",
                   help="how often symbols silent for twice this long are checked against exchangeInfo (delisted or "
                        "halted symbols are reported, not retried; default 60s)")
    p.add_argument("--db", default=None, help=f"DuckDB file (default {DEFAULT_DB}; {DEMO_DB} with --demo)")
    p.add_argument("--ws-url", default=None, help="WebSocket base, e.g. wss://stream.binance.us:9443 or ws://127.0.0.1:9001")
    p.add_argument("--rest-url", default=None, help="REST base, e.g. https://api.binance.us or http://127.0.0.1:9001")
    p.add_argument("--flush-ms", type=int, default=250, help="flush the buffer to the file every N ms (default 250)")
    p.add_argument("--demo", action="store_true", help="run against the built-in local exchange (offline)")
    p.add_argument("--log-level", default="INFO", choices=LEVELS)
    p.add_argument("--ready-file", default=None, metavar="PATH",
                   help="create PATH once the start checks passed (symbols known, exchange and file usable) and "
                        "remove it on exit; `make run` starts the app only then")
    p.add_argument("--max-backfill", default=None,
                   help="longest downtime backfilled over REST (default 6h, or --history if that is longer)")
    p.add_argument("--history", default=None,
                   help="on an empty file, first load this much history (default 0; with --demo 2h, or 24h for the "
                        "24-symbol universe, whose prints older than 2h come at a rate falling smoothly to 0.3x the "
                        "live one)")
    p.add_argument("--history-first", default="2h",
                   help="of --history, store this newest part first and the older rest after it, so pages show the "
                        "present within seconds (default 2h; 0 = all of it from the oldest trade on)")
    p.add_argument("--watchdog", default="30s", help="reconnect a connection silent this long (default 30s)")
    p.add_argument("--rotate-after", default="23.5h", help="open a fresh connection before Binance's 24h cut (default 23.5h)")
    p.add_argument("--demo-rate", type=float, default=5.0,
                   help="--demo: mean trades/s of BTC, ETH, SOL and BNB; the universe's other symbols trade a tenth "
                        "of it (default 5)")
    p.add_argument("--demo-seed", type=int, default=7, help="--demo: random seed")
    p.add_argument("--no-alerts", action="store_true", help="do not evaluate alert rules after each flush")
    p.add_argument("--max-buffer", type=int, default=2_000_000,
                   help="ticks held in memory at most while the file cannot be written (default 2,000,000, "
                        "~0.8 GB); beyond, new trades are skipped and backfilled once writing works again")
    p.add_argument("--funding-history", default="30d",
                   help="usdm: funding rates fetched this far back when the file has none (default 30d)")
    p.add_argument("--shutdown-timeout", default="30s",
                   help="on SIGINT/SIGTERM, keep retrying the final flush this long (default 30s); "
                        f"ticks still unwritten then make the exit code {EXIT_TICKS_LOST}")
    return p


def fail(msg: str) -> int:
    logging.getLogger("ingestor").error("%s", msg)
    return EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("import", "archive"):
        from history.cli import main as history_main

        return history_main(argv)
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    log = logging.getLogger("ingestor")

    from feed.binance import MARKETS

    markets = list(dict.fromkeys(m.strip().lower() for m in args.market.split(",") if m.strip()))
    if not markets or any(m not in MARKETS for m in markets):
        return fail(f"--market {args.market!r}: expected spot, usdm or spot,usdm")
    most = min(MARKETS[m].max_streams for m in markets)
    if not 1 <= args.streams_per_connection <= most:
        return fail(f"--streams-per-connection {args.streams_per_connection}: expected 1 to {most} (Binance's limit "
                    f"per connection; default {DEFAULT_STREAMS_PER_CONNECTION})")
    top = None
    if args.top is not None:
        top = int(args.top) if args.top.strip().isdigit() else 0
        if top < 1:
            return fail(f"--top {args.top!r}: expected a positive whole number of symbols, e.g. --top 100")
    # only now the ingest machinery (DuckDB, pyarrow, requests): a flag error above is reported without loading it
    from feed.ingest import ConfigError, IngestConfig, Ingestor

    exchange = ing = None
    try:
        # the simulated 24-symbol universe: --demo without --symbols, or --demo --top (which ranks the universe)
        universe = args.demo and (args.symbols is None or top is not None)
        given = parse_symbols(args.symbols) if args.symbols is not None else []
        if universe:
            from exchange.universe import demo_symbols

            by_market = {m: list(dict.fromkeys([*demo_symbols(m), *given])) for m in markets}
        else:
            syms = given if args.symbols is not None else parse_symbols("btcusdt,ethusdt")
            by_market = {m: list(syms) for m in markets}
        db = Path(args.db) if args.db else DEMO_DB if args.demo else DEFAULT_DB
        default_history = (DEMO_UNIVERSE_HISTORY_S if universe else DEMO_HISTORY_S) if args.demo else 0.0
        history = parse_duration(args.history) if args.history else default_history
        history_first = parse_duration(args.history_first, bare_seconds=True)
        max_backfill = parse_duration(args.max_backfill) if args.max_backfill else max(6 * 3600.0, history)
        cfg = IngestConfig(symbols=by_market[markets[0]], market=markets[0], markets=by_market, db=db,
                           ws_url=args.ws_url, rest_url=args.rest_url,
                           flush_ms=args.flush_ms, max_backfill_s=max_backfill,
                           history_s=history, history_first_s=history_first,
                           watchdog_s=parse_duration(args.watchdog),
                           rotate_after_s=parse_duration(args.rotate_after), demo=args.demo,
                           shutdown_timeout_s=parse_duration(args.shutdown_timeout), max_buffer=args.max_buffer,
                           funding_history_s=parse_duration(args.funding_history),
                           streams_per_connection=args.streams_per_connection,
                           status_check_s=parse_duration(args.status_check))
        if args.demo:
            every = list(dict.fromkeys(s for syms in by_market.values() for s in syms))
            exchange = demo_exchange(every, tuple(markets), seed=args.demo_seed, rate=args.demo_rate,
                                     history_s=history, universe=universe).start()
            cfg.ws_url, cfg.rest_url = exchange.ws_url, exchange.http_url
            log.info("demo exchange on %s (simulated data, file %s)", exchange.http_url, db)
        if top is not None:
            cfg.markets = {m: _select_top(cfg, MARKETS[m], top, given) for m in markets}
        ing = Ingestor(cfg)
        ing.check()
        alerts = None if args.no_alerts else _attach_alerts(ing, cfg)  # after the checks: a refused start skips pandas
    except (ConfigError, DurationError, SymbolError) as exc:
        if exchange is not None:
            exchange.stop()
        return fail(f"--symbols: {exc}" if isinstance(exc, SymbolError) else str(exc))
    except KeyboardInterrupt:  # Ctrl-C while the exchange is being reached: nothing started, nothing left behind
        if ing is not None:
            ing.abandon()
        if exchange is not None:
            exchange.stop()
        log.info("interrupted during the start checks; nothing started")
        return 130

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s; flushing and stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    from tickstore.connection import StoreError

    try:
        ing.start()  # resume() reads the file first: a damaged one is refused here, before any thread starts
    except StoreError as exc:
        ing.abandon()
        if exchange is not None:
            exchange.stop()
        return fail(f"--db {cfg.db}: {exc}")
    for market, syms in cfg.markets.items():
        log.info("ingesting %s %s into %s (flush every %d ms)", market, ",".join(syms), cfg.db, cfg.flush_ms)
    ready = Path(args.ready_file) if args.ready_file else None
    try:
        if ready is not None:
            try:
                ready.touch()
            except OSError as exc:
                log.warning("--ready-file %s: cannot create it (%s)", ready, exc.strerror)
        while not stop.wait(0.5):
            if ing.writer.fatal:  # the file was replaced under us: stop rather than write into someone else's file
                log.error("stopping: %s", ing.writer.fatal)
                break
    finally:
        if ready is not None:
            ready.unlink(missing_ok=True)
    lost = ing.stop()
    if alerts is not None:
        alerts.close()  # alerts: deliver queued webhooks (bounded wait) after the final flush
    if exchange is not None:
        exchange.stop()
    if lost:
        log.error("stopped with %d ticks unwritten to %s (the file stayed unusable); the next start backfills "
                  "what the exchange still serves", lost, cfg.db)
        return EXIT_TICKS_LOST
    return 0


def _select_top(cfg, spec, n: int, given: list[str]) -> list[str]:
    """The `--top n` symbols (plus `given`) from the exchange's 24 h ticker; ConfigError with one line if not."""
    from feed.binance import MalformedFrame
    from feed.ingest import ConfigError
    from feed.reach import host_of, unreachable
    from feed.rest import RestClient, RestError
    from feed.universe import top_symbols

    rest = RestClient(cfg.rest_url or spec.rest_base, weight_limit=cfg.weight_limit)
    try:
        sel = top_symbols(rest, spec, n, given)
    except RestError as exc:
        if exc.reason is None:
            raise ConfigError(f"--top {n}: cannot rank {spec.name} symbols from {rest.base}: {exc}") from None
        default = cfg.rest_url is None
        what = host_of(rest.base) if default else f"--rest-url {rest.base}"
        raise ConfigError(f"--top {n}: cannot rank {spec.name} symbols: "
                          f"{unreachable(what, exc.reason, spec.name, default)}") from None
    except MalformedFrame as exc:
        raise ConfigError(f"--top {n}: cannot rank {spec.name} symbols from {rest.base}: {exc}") from None
    if not sel.top:
        raise ConfigError(f"--top {n}: {rest.base} lists no TRADING USDT symbol with a 24 h volume on {spec.name}")
    logging.getLogger("ingestor").info("%s: %s", sel.summary(), ",".join(sel.symbols))
    return sel.symbols


def _attach_alerts(ing, cfg):
    """Evaluate alert rules after each flush, in this process (see alerts/); returns the engine."""
    from alerts.engine import AlertEngine

    engine = AlertEngine(status_provider=ing.state.lag)
    ing.writer.hooks.append(engine.on_flush)
    return engine


if __name__ == "__main__":
    sys.exit(main())
