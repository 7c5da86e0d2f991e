"""Long-term history: the Parquet archive of old ticks, and the bookkeeping of imported dump files.

Archive layout (hive, zstd), one directory per tick file, recorded in that file's `archive_meta` table:

    <archive_dir>/_tickdesk_archive.json                       owner marker (archive id, tick file)
    <archive_dir>/market=spot/symbol=BTCUSDT/date=2024-01-01/part-20240108T000112Z-1a2b3c4d.parquet

Each Parquet file holds `trade_id, ts, price, qty, is_buyer_maker, recv_ts, source` of one (market, symbol, UTC
day), ordered by trade id; market / symbol / date live in the path. `archive_files` lists every file with its
row count. A partition is moved in one write transaction: write a hidden temp file, read it back and check
counts / id sums / that every hot id is covered, rename it into place, delete exactly the verified hot rows,
register the file, commit. Readers cannot open the tick file while that transaction holds it, so they see either
the rows in the hot file or in the archive, never both (a crash between rename and commit leaves an unregistered
file, which the next run removes). Readers span both through the `ticks_all` view (tickstore.connection).

Imports dedupe against the hot file and the archive (`insert_dedup`) and keep a manifest (`import_files`) so a
file is never counted twice and an interrupted import resumes where it stopped.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.durations import DurationError, parse_duration
from tickstore import symbol_catalog
from tickstore.connection import StoreError, StoreMissing, write_connection
from tickstore.schema import ensure_schema
from tickstore.views import archive_root, resolve_stored_dir

log = logging.getLogger(__name__)

MARKER_NAME = "_tickdesk_archive.json"
LOCK_NAME = ".tickdesk-archive.lock"
PARTITION_GLOB = "market=*/symbol=*/date=*/*.parquet"
ARCHIVE_COLUMNS = ("trade_id", "ts", "price", "qty", "is_buyer_maker", "recv_ts", "source")
PARQUET_COMPRESSION = "zstd"

class ArchiveError(StoreError):
    """The archive cannot be written as asked; the message says why and what is expected."""


def ensure_history_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tick schema, which includes `archive_meta`, `archive_files` and `import_files` (idempotent)."""
    ensure_schema(con)


def _first(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> tuple | None:
    """First row of a query, fully consuming the result (a half-read result blocks the connection)."""
    rows = con.execute(sql, params or {}).fetchall()
    return rows[0] if rows else None


def is_demo_file(con: duckdb.DuckDBPyConnection) -> bool:
    """True for a file the ingestor claimed for simulated data (`tickdesk_meta`, see tickstore.state)."""
    try:
        return _first(con, "SELECT value FROM tickdesk_meta WHERE key = 'data'") == ("demo",)
    except duckdb.CatalogException:
        return False


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _event(con: duckdb.DuckDBPyConnection, market: str, symbol: str, kind: str, first_id: int | None,
           last_id: int | None, count: int, detail: str) -> None:
    con.execute("""INSERT INTO ingest_events(ts, market, symbol, kind, first_id, last_id, count, detail)
                   VALUES ($ts, $m, $s, $k, $a, $b, $n, $d)""",
                {"ts": _utcnow(), "m": market, "s": symbol, "k": kind, "a": first_id, "b": last_id, "n": count,
                 "d": detail})


# --------------------------------------------------------------------------------------------- archive location

def default_archive_dir(db_path: str | os.PathLike) -> Path:
    """`<db dir>/archive` for `ticks.duckdb`, `<db dir>/archive-<stem>` for any other file (demo never mixes)."""
    db_path = Path(db_path)
    return db_path.parent / ("archive" if db_path.stem == "ticks" else f"archive-{db_path.stem}")


def _stored_dir(db_path: Path, archive_dir: Path) -> str:
    """Relative to the tick file's directory when inside it (the pair can be moved together), else absolute."""
    base = db_path.resolve().parent
    target = archive_dir.resolve()
    return str(target.relative_to(base)) if target.is_relative_to(base) else str(target)


def _read_meta(con: duckdb.DuckDBPyConnection) -> tuple[str, str] | None:
    row = _first(con, "SELECT archive_id, archive_dir FROM archive_meta ORDER BY created_at LIMIT 1")
    return (row[0], row[1]) if row else None


def _read_marker(root: Path) -> dict | None:
    marker = root / MARKER_NAME
    if not marker.exists():
        return None
    try:
        data = json.loads(marker.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("archive_id"), str):
            raise ValueError("no archive_id")
        return data
    except (OSError, ValueError) as exc:
        raise ArchiveError(f"{marker} is unreadable ({exc}); it should be the marker a tickdesk archive writes") from exc


def _choose_archive_dir(con: duckdb.DuckDBPyConnection, db_path: Path,
                        archive_dir: str | os.PathLike | None) -> tuple[Path, str | None]:
    """(archive root, archive id already recorded in the file or None); validates that nothing mixes."""
    meta = _read_meta(con)
    if meta is not None:
        recorded = resolve_stored_dir(db_path, meta[1])
        if archive_dir is not None and Path(archive_dir).resolve() != recorded.resolve():
            raise ArchiveError(f"{db_path} already archives into {recorded}; pass --archive-dir {recorded} or omit it")
        root, archive_id = recorded, meta[0]
    else:
        root, archive_id = Path(archive_dir) if archive_dir is not None else default_archive_dir(db_path), None
    if root.exists() and not root.is_dir():
        raise ArchiveError(f"archive path {root} is a file; expected a directory")
    marker = _read_marker(root) if root.exists() else None
    if marker is not None and marker["archive_id"] != archive_id:
        owner = marker.get("db", "another tick file")
        raise ArchiveError(f"{root} holds the archive of {owner}; choose another --archive-dir for {db_path}")
    if marker is None and root.exists() and any(p.name not in (LOCK_NAME,) for p in root.iterdir()):
        if archive_id is None:
            raise ArchiveError(f"{root} is not empty and is not a tickdesk archive; choose an empty or new --archive-dir")
        raise ArchiveError(f"{root} lost its archive marker {MARKER_NAME}; restore it before archiving more")
    return root, archive_id


def _claim(con: duckdb.DuckDBPyConnection, db_path: Path, root: Path, archive_id: str | None) -> str:
    """Write the marker and `archive_meta` on first use; returns the archive id."""
    if archive_id is None:
        archive_id = uuid.uuid4().hex
        con.execute("INSERT INTO archive_meta VALUES ($id, $dir, $now)",
                    {"id": archive_id, "dir": _stored_dir(db_path, root), "now": _utcnow()})
    marker = root / MARKER_NAME
    if not marker.exists():
        tmp = root / f".{MARKER_NAME}.tmp"
        tmp.write_text(json.dumps({"archive_id": archive_id, "db": str(db_path.resolve()),
                                   "layout": "hive market/symbol/date, parquet zstd",
                                   "created_at": _utcnow().isoformat()}, indent=1))
        os.replace(tmp, marker)
    return archive_id


@contextlib.contextmanager
def _dir_lock(root: Path) -> Iterator[None]:
    """One archive run per directory at a time (advisory lock file)."""
    fh = open(root / LOCK_NAME, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ArchiveError(f"another archive run is using {root}; wait for it to finish") from None
        yield
    finally:
        fh.close()


# --------------------------------------------------------------------------------------------- reading

def archived_summary(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int, dt.datetime, dt.datetime, int]]:
    """Per (market, symbol): archived ticks, first and last trade time, file count — from `archive_files` alone
    (no Parquet is read), for catalog queries that would otherwise scan the whole archive."""
    has = _first(con, """SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()
                         AND schema_name = 'main' AND table_name = 'archive_files'""")[0]
    if not has:
        return []
    return [tuple(r) for r in con.execute("""SELECT market, symbol, sum(rows)::BIGINT, min(first_ts), max(last_ts),
                                                    count(*)::BIGINT
                                             FROM archive_files GROUP BY ALL ORDER BY ALL""").fetchall()]


_PATH_SAFE = re.compile(r"[A-Za-z0-9_]{1,40}")  # a market or symbol that may name a directory


def partition_problem(market: str, symbol: str) -> str | None:
    """Why (market, symbol) cannot name an archive partition (it could escape the archive directory), or None."""
    for what, v in (("market", market), ("symbol", symbol)):
        if not isinstance(v, str) or not _PATH_SAFE.fullmatch(v):
            return f"{what} {str(v)[:60]!r} is not letters and digits"
    return None


def _partition_dir(root: Path, market: str, symbol: str, day: dt.date) -> Path:
    problem = partition_problem(market, symbol)
    if problem:
        raise ArchiveError(f"refusing an archive path: {problem}")
    path = root / f"market={market}" / f"symbol={symbol}" / f"date={day.isoformat()}"
    if not path.resolve().is_relative_to(root.resolve()):
        raise ArchiveError(f"refusing archive path {path}: outside {root}")
    return path


def _registered(con: duckdb.DuckDBPyConnection, root: Path, market: str, symbol: str,
                first_day: dt.date, last_day: dt.date) -> list[str]:
    rows = con.execute("""SELECT path FROM archive_files WHERE market = $m AND symbol = $s AND day BETWEEN $a AND $b
                          ORDER BY path""", {"m": market, "s": symbol, "a": first_day, "b": last_day}).fetchall()
    return [str(root / r[0]) for r in rows]


# --------------------------------------------------------------------------------------------- import side

_IMPORT_SQL = """
INSERT INTO ticks
SELECT b.market, b.symbol, b.trade_id, b.ts, b.price, b.qty, b.is_buyer_maker, b.recv_ts, b.source
FROM {source} b
ANTI JOIN (SELECT market, symbol, trade_id FROM ticks WHERE ts BETWEEN $lo AND $hi) t
  ON b.market = t.market AND b.symbol = t.symbol AND b.trade_id = t.trade_id
""" + symbol_catalog.RETURNING
# The same print can be stored with ms (live stream) and µs (dump) precision: look that much wider for its id.
_TS_SLACK = dt.timedelta(seconds=1)


def quiet(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """No DuckDB progress bar on stdout for long statements (imports and archiving draw their own)."""
    con.execute("SET enable_progress_bar = false")
    return con


def insert_dedup(con: duckdb.DuckDBPyConnection, table: pa.Table, db_path: str | os.PathLike) -> int:
    """Append `table` (writer.ARROW_SCHEMA, one market and symbol) skipping ids already in the hot file or archive.

    The anti-join of `writer.insert_batch`, with the time window widened by `_TS_SLACK` (a µs dump row and the ms
    live row of the same trade differ by < 1 ms); a batch whose ids strictly increase (Binance dumps are ordered by
    id) needs no de-duplication within itself, which saves a hash aggregate over the batch.
    """
    if table.num_rows == 0:
        return 0
    quiet(con)
    root = archive_root(con, db_path)
    if root is not None:
        market, symbol = table.column("market")[0].as_py(), table.column("symbol")[0].as_py()
        lo, hi = pc.min(table.column("ts")).as_py() - _TS_SLACK, pc.max(table.column("ts")).as_py() + _TS_SLACK
        files = _registered(con, root, market, symbol, lo.date(), hi.date())
        if files:
            con.register("import_in", table)
            try:
                table = con.sql("""SELECT b.* FROM import_in b
                                   ANTI JOIN (SELECT trade_id FROM read_parquet($files)) a USING (trade_id)""",
                                params={"files": files}).to_arrow_table()
            finally:
                con.unregister("import_in")
            if table.num_rows == 0:
                return 0
    ids, ts = table.column("trade_id"), table.column("ts")
    ordered = table.num_rows < 2 or pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1))).as_py()
    source = "import_batch" if ordered else "(SELECT DISTINCT ON (market, symbol, trade_id) * FROM import_batch)"
    con.register("import_batch", table)
    try:
        window = {"lo": pc.min(ts).as_py() - _TS_SLACK, "hi": pc.max(ts).as_py() + _TS_SLACK}
        new = symbol_catalog.inserted_rows(con.execute(_IMPORT_SQL.format(source=source), window))
    finally:
        con.unregister("import_batch")
    symbol_catalog.note_inserted(con, new)
    return new.num_rows


@dataclass(frozen=True)
class ImportRecord:
    """One row of `import_files`."""

    sha256: str
    file_name: str
    market: str
    symbol: str
    kind: str
    rows_total: int
    rows_done: int
    inserted: int
    started_at: dt.datetime
    finished_at: dt.datetime | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


def import_record(con: duckdb.DuckDBPyConnection, sha256: str) -> ImportRecord | None:
    """The manifest row of a file (by content hash), or None (also when the file has no manifest yet)."""
    if not _first(con, """SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()
                          AND schema_name = 'main' AND table_name = 'import_files'""")[0]:
        return None
    row = _first(con, """SELECT sha256, file_name, market, symbol, kind, rows_total, rows_done, inserted, started_at,
                                finished_at FROM import_files WHERE sha256 = $h""", {"h": sha256})
    return ImportRecord(*row) if row else None


def import_begin(con: duckdb.DuckDBPyConnection, sha256: str, file_name: str, market: str, symbol: str, kind: str,
                 rows_total: int, skipped_invalid: int, first_ts: dt.datetime | None, last_ts: dt.datetime | None,
                 restart: bool = False) -> ImportRecord:
    """Start (or resume) a file in the manifest; `restart` resets its progress (re-import)."""
    con.execute("""INSERT INTO import_files VALUES ($h, $f, $m, $s, $k, $n, 0, 0, $skip, $a, $b, $now, NULL)
                   ON CONFLICT (sha256) DO UPDATE SET file_name = excluded.file_name,
                       rows_total = excluded.rows_total, skipped_invalid = excluded.skipped_invalid,
                       first_ts = excluded.first_ts, last_ts = excluded.last_ts""",
                {"h": sha256, "f": file_name, "m": market, "s": symbol, "k": kind, "n": rows_total,
                 "skip": skipped_invalid, "a": first_ts, "b": last_ts, "now": _utcnow()})
    if restart:
        con.execute("""UPDATE import_files SET rows_done = 0, inserted = 0, started_at = $now, finished_at = NULL
                       WHERE sha256 = $h""", {"h": sha256, "now": _utcnow()})
    return import_record(con, sha256)


def import_advance(con: duckdb.DuckDBPyConnection, sha256: str, rows: int, inserted: int) -> None:
    """Record progress; call inside the transaction that inserted the rows."""
    con.execute("UPDATE import_files SET rows_done = rows_done + $n, inserted = inserted + $i WHERE sha256 = $h",
                {"n": rows, "i": inserted, "h": sha256})


def import_finish(con: duckdb.DuckDBPyConnection, sha256: str, first_id: int | None, last_id: int | None) -> ImportRecord:
    """Mark a file done and log an `import` event."""
    con.execute("UPDATE import_files SET finished_at = $now WHERE sha256 = $h", {"now": _utcnow(), "h": sha256})
    rec = import_record(con, sha256)
    _event(con, rec.market, rec.symbol, "import", first_id, last_id, rec.inserted,
           f"{rec.file_name}: {rec.rows_total} rows, {rec.inserted} new")
    return rec


# --------------------------------------------------------------------------------------------- archive side

def parse_age(text: str) -> dt.timedelta:
    """'7d' / '2w' → timedelta (whole days; the archive moves whole UTC days)."""
    try:
        seconds = parse_duration(text, ("d", "w"), whole=True)
    except DurationError:
        raise ArchiveError(f"--older-than {text!r} not understood; expected days or weeks such as 7d, 30d or 2w") \
            from None
    return dt.timedelta(days=int(seconds // 86_400))


def archive_cutoff(now: dt.datetime, older_than: dt.timedelta) -> dt.datetime:
    """Start of the UTC day containing `now - older_than`: ticks before it are archived."""
    t = (now.astimezone(dt.UTC) if now.tzinfo else now.replace(tzinfo=dt.UTC)) - older_than
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class PartitionResult:
    """One (market, symbol, day) moved to the archive."""

    market: str
    symbol: str
    day: dt.date
    hot_rows: int          # rows removed from the hot file
    written_rows: int      # rows in the new Parquet file (hot rows not yet archived)
    file: Path | None      # new file, or None when every row was already archived
    bytes: int
    lock_held_s: float     # time this partition kept the tick file locked (both short transactions)


@dataclass(frozen=True)
class ArchiveResult:
    """What `archive_ticks` did."""

    archive_dir: Path
    cutoff: dt.datetime
    partitions: tuple[PartitionResult, ...]
    orphans_removed: int
    skipped: tuple[str, ...] = ()   # partitions left in the hot file, with the reason (e.g. an unsafe symbol)

    @property
    def rows_archived(self) -> int:
        return sum(p.hot_rows for p in self.partitions)

    @property
    def files_written(self) -> int:
        return sum(1 for p in self.partitions if p.file is not None)

    @property
    def bytes_written(self) -> int:
        return sum(p.bytes for p in self.partitions)

    def summary(self) -> str:
        skipped = (f"; {len(self.skipped)} partition(s) left in the hot file ({self.skipped[0]})"
                   if self.skipped else "")
        if not self.partitions:
            return f"nothing older than {self.cutoff:%Y-%m-%d %H:%M}Z to archive; archive at {self.archive_dir}{skipped}"
        return (f"archived {self.rows_archived:,} ticks from {len(self.partitions)} partition(s) into "
                f"{self.files_written} file(s), {self.bytes_written / 1e6:.1f} MB, under {self.archive_dir} "
                f"(ticks before {self.cutoff:%Y-%m-%d %H:%M}Z){skipped}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _spool(reader: pa.RecordBatchReader, path: Path) -> tuple[int, int]:
    """Stream batches into an uncompressed Arrow IPC file (fast; keeps memory bounded); returns (rows, id sum)."""
    rows = id_sum = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, reader.schema) as writer:
        for batch in reader:
            if batch.num_rows:
                writer.write_batch(batch)
                rows += batch.num_rows
                id_sum += pc.sum(batch.column("trade_id")).as_py()
    return rows, id_sum


def _write_parquet(spool: Path, path: Path) -> None:
    """Spool → one zstd Parquet file ordered by trade id, fsynced."""
    with pa.memory_map(str(spool)) as src:
        table = pa.ipc.open_file(src).read_all()
        ids = table.column("trade_id")
        if len(ids) > 1 and not pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1))).as_py():
            table = table.sort_by([("trade_id", "ascending"), ("ts", "ascending")])
        pq.write_table(table, path, compression=PARQUET_COMPRESSION, row_group_size=1 << 20)
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


class _Changed(Exception):
    """The partition gained rows between snapshot and delete (a concurrent import); retried."""


@dataclass(frozen=True)
class _Partition:
    """One (market, symbol, UTC day) being archived: its SQL predicate and the files of this run."""

    root: Path
    market: str
    symbol: str
    day: dt.date
    name: str                 # file name of the new Parquet file

    @property
    def lo(self) -> dt.datetime:
        return dt.datetime.combine(self.day, dt.time(), tzinfo=dt.UTC)

    @property
    def hi(self) -> dt.datetime:
        return self.lo + dt.timedelta(days=1)

    @property
    def pred(self) -> dict:
        return {"m": self.market, "s": self.symbol, "lo": self.lo, "hi": self.hi}

    WHERE = "market = $m AND symbol = $s AND ts >= $lo AND ts < $hi"
    T_WHERE = "t.market = $m AND t.symbol = $s AND t.ts >= $lo AND t.ts < $hi"

    @property
    def dir(self) -> Path:
        return _partition_dir(self.root, self.market, self.symbol, self.day)

    @property
    def spool(self) -> Path:
        return self.dir / f".{self.name}.spool.tmp"

    @property
    def tmp(self) -> Path:
        return self.dir / f".{self.name}.tmp"

    @property
    def final(self) -> Path:
        return self.dir / self.name

    def hot_count(self, con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
        """(rows, sum of trade ids) of the partition in the hot file."""
        return _first(con, f"SELECT count(*), coalesce(sum(trade_id), 0) FROM ticks WHERE {self.WHERE}", self.pred)


@dataclass(frozen=True)
class _Snapshot:
    """Step 1's result: the hot rows seen, and those spooled (the ones not yet in `existing` archive files)."""

    n_hot: int
    hot_sum: int
    existing: list[str]
    written: int
    written_sum: int


@dataclass(frozen=True)
class _Written:
    """Step 2's result: the verified temp Parquet file's ids and time range."""

    ids: pa.ChunkedArray
    first_ts: dt.datetime
    last_ts: dt.datetime


def _archive_partition(db_path: Path, root: Path, market: str, symbol: str, day: dt.date,
                       lock_budget_s: float) -> PartitionResult | None:
    """Move one partition's hot rows into the archive (see module docstring).

    1. write lock: snapshot the partition's rows (not yet archived) into a hidden spool file; count + id sum.
    2. no lock: spool → zstd Parquet temp file; read it back and check rows, id sum and day.
    3. write lock, one transaction: the partition must still hold exactly the snapshot (else _Changed); every hot
       id must be in the archive files; rename the temp file into place; delete the partition's hot rows (count
       must equal the snapshot); register the file; commit.
    """
    part = _Partition(root, market, symbol, day, f"part-{_utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}.parquet")
    held = 0.0
    try:
        t0 = time.monotonic()
        with write_connection(db_path, budget_s=lock_budget_s) as con:
            quiet(con)
            snap = _snapshot(con, part)
        held += time.monotonic() - t0
        if snap is None:
            return None
        out = _write_verified(part, snap) if snap.written else None
        part.spool.unlink(missing_ok=True)
        t0 = time.monotonic()
        with write_connection(db_path, budget_s=lock_budget_s) as con:
            quiet(con)
            nbytes = _commit(con, part, snap, out)
        held += time.monotonic() - t0
    finally:
        part.spool.unlink(missing_ok=True)
        part.tmp.unlink(missing_ok=True)
    log.info("archived %s %s %s: %d ticks (%d written, %.1f kB), file locked %.2fs", market, symbol, day, snap.n_hot,
             snap.written, nbytes / 1e3, held)
    return PartitionResult(market, symbol, day, int(snap.n_hot), snap.written, part.final if snap.written else None,
                           nbytes, held)


def _snapshot(con: duckdb.DuckDBPyConnection, part: _Partition) -> _Snapshot | None:
    """Step 1 (under the write lock): count the hot rows, spool those not yet archived; None if there are none."""
    n_hot, hot_sum = part.hot_count(con)
    if not n_hot:
        return None
    part.dir.mkdir(parents=True, exist_ok=True)
    existing = _registered(con, part.root, part.market, part.symbol, part.day, part.day)
    select = f"SELECT {', '.join(f't.{c}' for c in ARCHIVE_COLUMNS)} FROM ticks t"
    params = part.pred
    if existing:
        select += " ANTI JOIN (SELECT trade_id FROM read_parquet($files)) a USING (trade_id)"
        params["files"] = existing
    select += f" WHERE {part.T_WHERE}"          # sorted outside the lock (_write_parquet)
    written, written_sum = _spool(con.sql(select, params=params).to_arrow_reader(256_000), part.spool)
    return _Snapshot(n_hot, hot_sum, existing, written, written_sum)


def _write_verified(part: _Partition, snap: _Snapshot) -> _Written:
    """Step 2 (no lock): spool → temp Parquet file, read back; its rows, id sum and day must match the snapshot."""
    _write_parquet(part.spool, part.tmp)
    back = pq.read_table(part.tmp, columns=["trade_id", "ts"])
    if back.num_rows != snap.written or pc.sum(back.column("trade_id")).as_py() != snap.written_sum:
        raise ArchiveError(f"{part.tmp} read back {back.num_rows} rows, expected {snap.written}; nothing deleted")
    first_ts, last_ts = pc.min(back.column("ts")).as_py(), pc.max(back.column("ts")).as_py()
    if first_ts < part.lo or last_ts >= part.hi:
        raise ArchiveError(f"{part.tmp} holds ticks outside {part.day}; nothing deleted")
    return _Written(back.column("trade_id"), first_ts, last_ts)


def _commit(con: duckdb.DuckDBPyConnection, part: _Partition, snap: _Snapshot, out: _Written | None) -> int:
    """Step 3 (under the write lock, one transaction): verify, put the file in place, delete the hot rows, register
    the file; on any failure roll back and remove the renamed file. Returns the new file's size in bytes."""
    renamed = False
    nbytes = 0
    try:
        con.execute("BEGIN")
        if part.hot_count(con) != (snap.n_hot, snap.hot_sum):
            raise _Changed()
        files = snap.existing + ([str(part.tmp)] if out else [])
        uncovered = _first(con, f"""SELECT count(*) FROM ticks t
                                    ANTI JOIN (SELECT trade_id FROM read_parquet($files)) a USING (trade_id)
                                    WHERE {part.T_WHERE}""", part.pred | {"files": files})[0]
        where = f"{part.market} {part.symbol} {part.day}"
        if uncovered:
            raise ArchiveError(f"{uncovered} hot ticks of {where} are not in the archive after writing; "
                               "nothing deleted")
        if out:
            os.replace(part.tmp, part.final)
            renamed = True
            _fsync_dir(part.dir)
            nbytes = part.final.stat().st_size
        deleted = _first(con, f"DELETE FROM ticks WHERE {part.WHERE}", part.pred)[0]
        if deleted != snap.n_hot:
            raise ArchiveError(f"deleted {deleted} hot ticks of {where}, verified {snap.n_hot}; rolled back")
        symbol_catalog.note_deleted(con, part.market, part.symbol, deleted)
        rel = part.final.relative_to(part.root)
        if out:
            con.execute("INSERT INTO archive_files VALUES ($p, $m, $s, $d, $n, $bytes, $a, $b, $ta, $tb, $now)",
                        {"p": str(rel), "m": part.market, "s": part.symbol, "d": part.day, "n": snap.written,
                         "bytes": nbytes, "a": pc.min(out.ids).as_py(), "b": pc.max(out.ids).as_py(),
                         "ta": out.first_ts, "tb": out.last_ts, "now": _utcnow()})
        _event(con, part.market, part.symbol, "archive", None, None, int(snap.n_hot),
               f"{part.day}: {snap.n_hot} ticks moved to the archive ({snap.written} written to "
               f"{rel if out else 'files already there'})")
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        if renamed:
            part.final.unlink(missing_ok=True)
        raise
    return nbytes


_PART_RE = re.compile(r"market=([^/]+)/symbol=([^/]+)/date=(\d{4}-\d{2}-\d{2})/[^/]+\.parquet$")


def _recover_orphans(db_path: Path, root: Path, lock_budget_s: float) -> int:
    """Clean up after an interrupted run: hidden temp files go; unregistered Parquet files whose rows are all still
    hot (renamed but never committed) go; any other unregistered file is adopted (registered) with a warning."""
    for tmp in root.glob("market=*/symbol=*/date=*/.*.tmp"):
        tmp.unlink(missing_ok=True)
    on_disk = {str(p.relative_to(root)): p for p in root.glob(PARTITION_GLOB)}
    if not on_disk:
        return 0
    removed = 0
    with write_connection(db_path, budget_s=lock_budget_s) as con:
        known = {r[0] for r in con.execute("SELECT path FROM archive_files").fetchall()}
        for rel, path in sorted(on_disk.items()):
            if rel in known:
                continue
            m = _PART_RE.search(rel.replace(os.sep, "/"))
            if not m:
                log.warning("ignoring unexpected file %s in the archive", path)
                continue
            market, symbol, day = m.group(1), m.group(2), dt.date.fromisoformat(m.group(3))
            lo = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            t = pq.read_table(path, columns=["trade_id", "ts"])
            missing = _first(con, """SELECT count(*) FROM (SELECT trade_id FROM read_parquet($f)) a
                                     ANTI JOIN (SELECT trade_id FROM ticks WHERE market = $m AND symbol = $s
                                                AND ts >= $lo AND ts < $hi) t USING (trade_id)""",
                                  {"f": str(path), "m": market, "s": symbol, "lo": lo,
                                   "hi": lo + dt.timedelta(days=1)})[0]
            if missing == 0:
                log.warning("removing %s: left by an interrupted archive run, its ticks are still in the hot file", rel)
                path.unlink()
                removed += 1
            else:
                log.warning("adopting unregistered archive file %s (%d ticks not in the hot file)", rel, missing)
                ids = t.column("trade_id")
                con.execute("""INSERT INTO archive_files VALUES ($p, $m, $s, $d, $n, $bytes, $a, $b, $ta, $tb, $now)""",
                            {"p": rel, "m": market, "s": symbol, "d": day, "n": t.num_rows,
                             "bytes": path.stat().st_size, "a": pc.min(ids).as_py(), "b": pc.max(ids).as_py(),
                             "ta": pc.min(t.column("ts")).as_py(), "tb": pc.max(t.column("ts")).as_py(),
                             "now": _utcnow()})
    return removed


def archive_ticks(db_path: str | os.PathLike, older_than: dt.timedelta, archive_dir: str | os.PathLike | None = None,
                  now: dt.datetime | None = None, lock_budget_s: float = 60.0,
                  on_partition: Callable[[PartitionResult, int, int], None] | None = None) -> ArchiveResult:
    """Move every tick before `archive_cutoff(now, older_than)` from the hot file into the Parquet archive.

    Safe while the ingestor runs: each partition takes the file for one short transaction (retrying on lock
    conflicts for up to `lock_budget_s`). `on_partition(result, index, total)` reports progress.
    """
    db_path = Path(db_path)
    if not db_path.exists():
        raise StoreMissing(f"tick file {db_path} does not exist; nothing to archive")
    cutoff = archive_cutoff(now or _utcnow(), older_than)
    with write_connection(db_path, budget_s=lock_budget_s) as con:
        if is_demo_file(con):
            raise ArchiveError(f"{db_path} holds simulated demo ticks, which a demo restart clears; "
                               "archiving is for live tick files")
        ensure_history_schema(con)
        root, archive_id = _choose_archive_dir(con, db_path, archive_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create archive directory {root}: {exc.strerror}") from exc
    if not os.access(root, os.W_OK):
        raise ArchiveError(f"archive directory {root} is not writable")
    with _dir_lock(root):
        with write_connection(db_path, budget_s=lock_budget_s) as con:
            _choose_archive_dir(con, db_path, root)      # re-check under the lock
            _claim(con, db_path, root, archive_id)
        orphans = _recover_orphans(db_path, root, lock_budget_s)
        with write_connection(db_path, budget_s=lock_budget_s) as con:
            parts = con.execute("""SELECT market, symbol, CAST(ts AS DATE) AS day, count(*) FROM ticks
                                   WHERE ts < $cutoff GROUP BY ALL ORDER BY day, market, symbol""",
                                {"cutoff": cutoff}).fetchall()
        log.info("archiving %d partition(s) before %s into %s", len(parts), cutoff.isoformat(), root)
        skipped: list[str] = []
        done: list[PartitionResult] = []
        for i, (market, symbol, day, _n) in enumerate(parts):
            problem = partition_problem(market, symbol)
            if problem:  # rows no valid ingest path stores; left in the hot file rather than written anywhere
                log.warning("left %d tick(s) of %s %s %s in the hot file: %s", _n, market, str(symbol)[:60], day, problem)
                skipped.append(f"{market} {str(symbol)[:60]} {day}: {problem}")
                continue
            for attempt in range(1, 4):
                try:
                    res = _archive_partition(db_path, root, market, symbol, day, lock_budget_s)
                    break
                except _Changed:
                    log.info("%s %s %s gained ticks while being archived (attempt %d); retrying", market, symbol,
                             day, attempt)
            else:
                raise ArchiveError(f"{market} {symbol} {day} kept changing while being archived (an import running?); "
                                   "run archive again when it is done")
            if res is not None:
                done.append(res)
                if on_partition is not None:
                    on_partition(res, i + 1, len(parts))
    return ArchiveResult(root, cutoff, tuple(done), orphans, tuple(skipped))
