"""`python ingestor.py import PATH...` and `python ingestor.py archive --older-than 7d` (history subcommands).

    import PATH... [--db data/ticks.duckdb] [--market spot|usdm] [--force] [--log-level INFO]
    archive --older-than 7d [--db data/ticks.duckdb] [--archive-dir DIR] [--log-level INFO]

Bad input (wrong file, bad age, unwritable path, an archive that belongs to another file) → one error line on
stderr, exit code 2; nothing is changed. Ctrl-C during an import → exit 130; run the same command to resume.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TextIO

from core.logs import LEVELS, setup_logging
from core.paths import DEFAULT_DB
from history.dumps import DumpError, Progress, import_dumps
from tickstore.archive import PartitionResult, archive_ticks, parse_age
from tickstore.connection import StoreError, store_failure

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

log = logging.getLogger("ingestor.history")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit code 2) instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ingestor.py", description="Import Binance dumps and archive old ticks.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    imp = sub.add_parser("import", help="load Binance public-data trades / aggTrades dumps (zip or csv)",
                         description="Load data.binance.vision trades / aggTrades dumps (zip or CSV, spot or USD-M) "
                                     "into the tick file, deduplicated by id; resumable.")
    imp.add_argument("paths", nargs="+", metavar="PATH", help="dump files or directories holding them")
    imp.add_argument("--db", default=DEFAULT_DB, help=f"DuckDB tick file (default {DEFAULT_DB})")
    imp.add_argument("--market", choices=["spot", "usdm"], default=None,
                     help="source market when the path does not say (default: from the column layout)")
    imp.add_argument("--force", action="store_true", help="re-run files already imported (ids stay deduplicated)")
    imp.add_argument("--batch-rows", type=int, default=500_000, help=argparse.SUPPRESS)
    imp.add_argument("--log-level", default="INFO", choices=LEVELS)
    arc = sub.add_parser("archive", help="move old ticks into a Parquet archive (hive layout, zstd)",
                         description="Move whole UTC days older than --older-than out of the tick file into Parquet "
                                     "files partitioned by market/symbol/date; queries keep spanning both.")
    arc.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 7d, 30d, 2w")
    arc.add_argument("--db", default=DEFAULT_DB, help=f"DuckDB tick file (default {DEFAULT_DB})")
    arc.add_argument("--archive-dir", default=None,
                     help="archive directory (default: the one recorded in the file, else data/archive next to "
                          "ticks.duckdb, archive-<name> next to any other file)")
    arc.add_argument("--log-level", default="INFO", choices=LEVELS)
    return p


class ProgressBar:
    """A one-line progress bar on a terminal; a log line every few seconds otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 28, every_s: float = 5.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.width = width
        self.every_s = every_s
        self._last = 0.0
        self._key: tuple[str, str] | None = None
        self._t0 = time.monotonic()
        self._open = False
        self._finished = False

    def __call__(self, p: Progress) -> None:
        key = (p.stage, p.file)
        now = time.monotonic()
        if key != self._key:
            self.close()
            self._key, self._t0, self._last, self._finished = key, now, 0.0, False
        finished = p.total > 0 and p.done >= p.total
        if finished and self._finished:
            return
        if not finished and now - self._last < (0.1 if self.tty else self.every_s):
            return
        self._last, self._finished = now, finished
        frac = min(1.0, p.done / p.total) if p.total else 0.0
        elapsed = now - self._t0
        unit = "MB" if p.unit == "bytes" else "rows"
        scale = 1e6 if p.unit == "bytes" else 1
        label = f"[{p.index}/{p.files}] {'checking' if p.stage == 'check' else 'importing'} {p.file}"
        counts = f"{p.done / scale:,.0f}/{p.total / scale:,.0f} {unit}"
        if elapsed >= 0.5:
            counts += f"  {p.done / scale / elapsed:,.0f} {unit}/s"
        if self.tty:
            fill = int(frac * self.width)
            self.stream.write(f"\r{label} |{'█' * fill}{' ' * (self.width - fill)}| {frac:6.1%} {counts}\x1b[K")
            self.stream.flush()
            self._open = True
            if finished:
                self.close()
        else:
            log.info("%s: %.1f%% (%s)", label, frac * 100, counts)

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def _run_import(args: argparse.Namespace) -> int:
    bar = ProgressBar()
    try:
        results = import_dumps(args.paths, args.db, market=args.market, progress=bar, batch_rows=args.batch_rows,
                               force=args.force)
    finally:
        bar.close()
    for r in results:
        sys.stdout.write(r.summary() + "\n")
    total = sum(r.inserted for r in results)
    sys.stdout.write(f"{total:,} new ticks from {len(results)} file(s) into {args.db}\n")
    return EXIT_OK


def _run_archive(args: argparse.Namespace) -> int:
    age = parse_age(args.older_than)

    def report(res: PartitionResult, i: int, n: int) -> None:
        log.info("[%d/%d] %s %s %s: %d ticks archived", i, n, res.market, res.symbol, res.day, res.hot_rows)

    result = archive_ticks(args.db, age, archive_dir=args.archive_dir, on_partition=report)
    sys.stdout.write(result.summary() + "\n")
    return EXIT_OK


def main(argv: list[str]) -> int:
    """Run `import` or `archive`; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    setup_logging(args.log_level)
    try:
        return _run_import(args) if args.command == "import" else _run_archive(args)
    except (DumpError, StoreError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    except OSError as exc:  # e.g. the archive's disk filling up while a Parquet file is written
        failure = store_failure(exc, args.db if args.command == "import" else (args.archive_dir or args.db))
        if failure is None:
            raise
        sys.stderr.write(f"error: {failure}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        if args.command == "import":
            sys.stderr.write("interrupted; committed batches are kept, run the same command to resume\n")
        else:
            sys.stderr.write("interrupted; finished partitions are archived, run the same command to continue\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
