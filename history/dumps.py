"""Binance public-data dumps (data.binance.vision): detect, validate and import trades / aggTrades files.

Accepted: `SYMBOL-trades-YYYY-MM-DD.zip`, `SYMBOL-aggTrades-YYYY-MM.zip` (daily or monthly) or the CSV inside,
spot or USD-M, with or without a header row, times in ms or µs (13 / 16 digits), `<file>.CHECKSUM` (sha256sum
format) verified when it sits next to the file. The kind and symbol come from the file name; the market from the
column layout (spot trades 7 columns, USD-M trades 6, spot aggTrades 8, USD-M aggTrades 7), a `spot/` or
`futures/um/` path, or `market=`.

Id spaces. `ticks` keeps one id space per (market, symbol): spot = trade ids (the live `@trade` stream),
usdm = aggTrade ids (the live `@aggTrade` stream). Dumps in the other id space are stored under their own market
label, never mixed in: spot aggTrades → `spot_agg`, USD-M trades → `usdm_trades` (see STORE_MARKETS).

Plausibility: every row's time must lie in the UTC day (or month) its file name gives, within 2009–2100 and not
ahead of now (core.plausible, the bounds CSV uploads use too); ids must be below core.plausible.ID_MAX and, as in
every real dump, about as many ids as rows (a consecutive run). A row that fails names its line and refuses the
file: one absurd id would make the ingestor resume after it and count every live trade as a duplicate, one row
dated 2200 would anchor every chart of the market in the future.

Each file is read from a private copy taken before the check (uploads already are), so the rows written are exactly
the rows checked even if the original changes meanwhile.

Import is two passes over each file: first parse and validate everything (nothing is written, so a wrong file
changes nothing), then insert in batches, each in its own short write transaction deduplicated by id against the
hot file and the archive, with the file's progress committed in the same transaction (`import_files`), so an
interrupted import resumes where it stopped and a file imported twice adds nothing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.binance_csv import HEADER_ROLES, TRADE_LAYOUTS
from core.plausible import ID_MAX, MAX_AHEAD_US, TS_MAX_US, TS_MIN_US, now_us
from core.symbols import PATTERN as SYMBOL_PATTERN
from tickstore.archive import (ImportRecord, ensure_history_schema, import_advance, import_begin, import_finish,
                               import_record, insert_dedup, is_demo_file)
from tickstore.appwrite import IMPORT_WRITE_BUDGET_S, app_write
from tickstore.writer import ARROW_SCHEMA

log = logging.getLogger(__name__)

SOURCE = "import"
KINDS = ("trades", "aggTrades")
VENUES = ("spot", "usdm")

# (venue, kind) -> `ticks.market`: the live id space of each venue keeps its plain name.
STORE_MARKETS: dict[tuple[str, str], str] = {
    ("spot", "trades"): "spot", ("spot", "aggTrades"): "spot_agg",
    ("usdm", "aggTrades"): "usdm", ("usdm", "trades"): "usdm_trades",
}

_NAME_RE = re.compile(rf"^(?P<symbol>(?i:{SYMBOL_PATTERN}))-(?P<kind>trades|aggTrades)-"
                      r"(?P<period>\d{4}-\d{2}(?:-\d{2})?)(?: \(\d+\))?\.(?P<ext>zip|csv)$")
_KLINES_RE = re.compile(r"^[A-Za-z0-9]+-(?:\d+[smhdw]|1mo)-\d{4}-\d{2}", re.I)
_OTHER_DUMP_RE = re.compile(r"^[A-Za-z0-9_]+-(bookTicker|bookDepth|metrics|markPriceKlines|indexPriceKlines|"
                            r"premiumIndexKlines|fundingRate|liquidationSnapshot|BVOLIndex|EOHSummary)-", re.I)
_SNIFF_BYTES = 64 * 1024
_BLOCK_BYTES = 8 << 20
_TRUE = ["true", "True", "TRUE"]
_FALSE = ["false", "False", "FALSE"]


class DumpError(ValueError):
    """A file that is not a supported Binance dump; the message names the file, what is wrong and what is expected."""


@dataclass(frozen=True)
class DumpFile:
    """What the name, container, first lines and checksum of a file say (nothing parsed beyond the first lines)."""

    path: Path
    name: str
    symbol: str
    kind: str                # 'trades' | 'aggTrades'
    period: str              # '2024-01-01' (daily) or '2024-01' (monthly)
    venue: str               # 'spot' | 'usdm' (source layout)
    market: str              # `ticks.market` the rows go to (STORE_MARKETS)
    columns: tuple[str, ...]
    has_header: bool
    member: str | None       # CSV name inside the zip, None for a bare CSV
    csv_bytes: int           # uncompressed CSV size
    sha256: str
    checksum: str            # 'verified' | 'absent'


@dataclass(frozen=True)
class DumpCheck:
    """Result of the validating pass over the whole file."""

    dump: DumpFile
    rows: int                # valid rows (what would be imported)
    skipped_invalid: int     # spot aggTrades rows Binance marked invalid (p=0, q=0, f=l=-1)
    first_ts: dt.datetime | None
    last_ts: dt.datetime | None
    first_id: int | None
    last_id: int | None
    time_unit: str           # 'ms' | 'us' | 'ms+us'


@dataclass(frozen=True)
class ImportResult:
    """One file's outcome."""

    file: str
    market: str
    symbol: str
    kind: str
    rows: int                # valid rows in the file
    inserted: int            # new ticks stored by this run
    resumed_from: int        # rows already done by an earlier, interrupted run
    already_imported: bool   # skipped: the same bytes were imported before
    skipped_invalid: int

    @property
    def duplicates(self) -> int:
        """Rows of this run that were already stored (live ingestor, another dump, the archive)."""
        return 0 if self.already_imported else self.rows - self.resumed_from - self.inserted

    def summary(self) -> str:
        where = f"{self.market} {self.symbol}"
        if self.already_imported:
            return f"{self.file}: already imported into {where} ({self.rows:,} rows); nothing to do"
        resumed = f", resumed after {self.resumed_from:,}" if self.resumed_from else ""
        invalid = f", {self.skipped_invalid:,} rows marked invalid by Binance skipped" if self.skipped_invalid else ""
        return (f"{self.file}: {self.rows:,} rows → {where}: {self.inserted:,} new, {self.duplicates:,} already "
                f"stored{resumed}{invalid}")


@dataclass(frozen=True)
class Progress:
    """Progress of one stage of one file: `done` out of `total` `unit`s."""

    stage: str               # 'check' | 'import'
    file: str
    index: int               # 1-based file number
    files: int
    done: int
    total: int
    unit: str                # 'bytes' | 'rows'


ProgressFn = Callable[[Progress], None]


# --------------------------------------------------------------------------------------------- detection

def _fail(name: str, msg: str) -> DumpError:
    return DumpError(f"{name}: {msg}")


def parse_name(name: str) -> tuple[str, str, str]:
    """(SYMBOL, kind, period) from a dump file name, or DumpError saying what is expected."""
    m = _NAME_RE.match(name)
    if m:
        return m.group("symbol").upper(), m.group("kind"), m.group("period")
    if _KLINES_RE.match(name):
        what = "a klines dump"
    elif _OTHER_DUMP_RE.match(name):
        what = f"a {_OTHER_DUMP_RE.match(name).group(1)} dump"
    else:
        what = "not a Binance trades/aggTrades dump name"
    raise _fail(name, f"{what}; expected SYMBOL-trades-YYYY-MM-DD.zip or SYMBOL-aggTrades-YYYY-MM[-DD].zip "
                      "(or the .csv inside) from data.binance.vision")


def period_bounds(period: str) -> tuple[int, int]:
    """[start, end) in µs (UTC) of a dump's `YYYY-MM-DD` day or `YYYY-MM` month; ValueError for a date that does not
    exist."""
    if len(period) == 10:
        lo = dt.datetime.strptime(period, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        hi = lo + dt.timedelta(days=1)
    else:
        lo = dt.datetime.strptime(period, "%Y-%m").replace(tzinfo=dt.UTC)
        hi = (lo + dt.timedelta(days=32)).replace(day=1)
    return int(lo.timestamp()) * 1_000_000, int(hi.timestamp()) * 1_000_000


# a dump holds a consecutive run of ids: allow generous slack, refuse spans no real file has
def _max_id_span(rows: int) -> int:
    return 10 * rows + 100_000


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify_checksum(path: Path, digest: str) -> str:
    cs = path.with_name(path.name + ".CHECKSUM")
    if not cs.exists():
        return "absent"
    text = cs.read_text(errors="replace").strip()
    m = re.match(r"^([0-9a-fA-F]{64})(?:\s+\*?(\S.*))?$", text.splitlines()[0] if text else "")
    if not m:
        raise _fail(path.name, f"{cs.name} is not in sha256sum format ('<64 hex digits>  <file name>')")
    if m.group(2) and Path(m.group(2).strip()).name != path.name:
        raise _fail(path.name, f"{cs.name} is the checksum of {m.group(2).strip()}, not of this file")
    if m.group(1).lower() != digest:
        raise _fail(path.name, f"sha256 {digest[:12]}… does not match {cs.name} ({m.group(1)[:12].lower()}…); "
                               "the download is corrupt or incomplete, fetch it again")
    return "verified"


class _Counting:
    """Read-only file wrapper counting bytes handed to the CSV reader (for progress)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.count = 0
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.count += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _open_csv_bytes(stack: contextlib.ExitStack, dump_path: Path, member: str | None) -> BinaryIO:
    """The CSV bytes of a dump (the zip member, or the file itself), closed with `stack`."""
    if member is None:
        return stack.enter_context(open(dump_path, "rb"))
    return stack.enter_context(stack.enter_context(zipfile.ZipFile(dump_path)).open(member))


def _zip_damage(dump: "DumpFile") -> str | None:
    """Why the dump's zip member fails its CRC check, else None. A damaged deflate stream can decode to garbage that
    the CSV reader (reading ahead) rejects before the CRC check at the end is reached; the zip is the cause then."""
    if dump.member is None or dump.csv_bytes > _CRC_CHECK_MAX_BYTES:
        return None  # bounded: a message must not cost decompressing gigabytes
    try:
        with zipfile.ZipFile(dump.path) as zf, zf.open(dump.member) as fh:
            while fh.read(1 << 20):
                pass
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        return str(exc)
    return None


_CRC_CHECK_MAX_BYTES = 512 << 20
_MAX_RATIO = 100        # Binance trade CSVs deflate ~4-8x; a member expanding 100x or more is not one (a zip bomb)
_LOCATE_MAX_BYTES = 64 << 20


def _locate(dump: "DumpFile", first_line: int, exc: Exception) -> int | None:
    """The 1-based line of the value or row an Arrow CSV error quotes, searched from `first_line` (the error's
    batch) over at most _LOCATE_MAX_BYTES, else None."""
    m = re.search(r"invalid value '(.*)'$|got \d+: (.*)$", str(exc).splitlines()[0])
    needle = (m.group(1) or m.group(2) or "").strip() if m else ""
    if not needle:
        return None
    scanned = 0
    with contextlib.ExitStack() as stack:
        for n, raw in enumerate(_open_csv_bytes(stack, dump.path, dump.member), start=1):
            scanned += len(raw)
            if scanned > _LOCATE_MAX_BYTES + first_line * 200:
                return None
            if n >= first_line and needle in raw.decode("utf-8", errors="replace"):
                return n
    return None


def _is_number(field: str) -> bool:
    return re.fullmatch(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", field.strip()) is not None


def _venue_from_path(path: Path, kind: str) -> str | None:
    """'spot' / 'usdm' / 'cm' from Binance's download layout `.../{spot|futures/um|futures/cm}/{daily|monthly}/
    {kind}/SYMBOL/file`, else None."""
    up = path.parents
    if len(up) < 5 or up[1].name != kind or up[2].name not in ("daily", "monthly"):
        return None
    venue, parent = up[3].name, up[4].name
    if venue == "spot":
        return "spot"
    if parent == "futures" and venue in ("um", "cm"):
        return "usdm" if venue == "um" else "cm"
    return None


def inspect_dump(path: str | os.PathLike, market: str | None = None, name: str | None = None) -> DumpFile:
    """Name, container, layout and checksum of one file, or DumpError. `market` ('spot' | 'usdm') overrides a
    market hint from the path; it must agree with the column layout. `name` replaces the file name (uploads)."""
    path = Path(path)
    name = name or path.name
    if market is not None and market not in VENUES:
        raise _fail(name, f"unknown market {market!r}; expected spot or usdm")
    if not path.is_file():
        raise _fail(name, "no such file")
    symbol, kind, period = parse_name(name)
    try:
        lo, hi = period_bounds(period)
    except ValueError:
        raise _fail(name, f"{period} in the file name is not a date; expected YYYY-MM-DD or YYYY-MM") from None
    if hi <= TS_MIN_US or lo >= min(TS_MAX_US, now_us() + MAX_AHEAD_US):
        raise _fail(name, f"{period} in the file name is outside 2009 – today; Binance dumps start in 2017")
    hint = _venue_from_path(path.resolve(), kind)
    if hint == "cm":
        raise _fail(name, "a COIN-M (futures/cm) dump; only spot and USD-M (futures/um) are supported")
    digest = _sha256(path)
    checksum = _verify_checksum(path, digest)

    member: str | None = None
    if name.endswith(".zip"):
        if not zipfile.is_zipfile(path):
            raise _fail(name, "not a zip archive (truncated download?); expected the .zip from data.binance.vision")
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            csvs = [i for i in infos if i.filename.lower().endswith(".csv")]
            if len(infos) != 1 or len(csvs) != 1:
                raise _fail(name, f"zip holds {len(infos)} file(s) ({', '.join(i.filename for i in infos[:3])}); "
                                  "expected exactly one CSV")
            member, csv_bytes = csvs[0].filename, csvs[0].file_size
            if csv_bytes > (1 << 20) and csv_bytes > _MAX_RATIO * max(csvs[0].compress_size, 1):
                raise _fail(name, f"{member} would expand {csv_bytes / max(csvs[0].compress_size, 1):,.0f}x to "
                                  f"{csv_bytes / 1e6:,.0f} MB; a Binance dump compresses far less (a zip bomb?)")
            inner = Path(member).name
            if _NAME_RE.match(inner) and parse_name(inner)[:2] != (symbol, kind):
                raise _fail(name, f"zip name and the CSV inside ({inner}) disagree on symbol or kind")
            try:
                with zf.open(member) as fh:
                    head = fh.read(_SNIFF_BYTES)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                raise _fail(name, f"zip is damaged ({exc}); download it again") from exc
    else:
        csv_bytes = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)

    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
        if "\x00" in text:
            raise _fail(name, "binary content, not CSV text") from None
    lines = [ln for ln in text.lstrip("\ufeff").splitlines()[:3] if ln.strip()]
    if not lines:
        raise _fail(name, "empty file; expected CSV rows of trades")
    first = [f.strip() for f in lines[0].split(",")]
    has_header = not _is_number(first[0])
    data_line = lines[1] if has_header and len(lines) > 1 else (lines[0] if not has_header else None)
    if data_line is None:
        raise _fail(name, "has a header but no rows")
    n_cols = len(data_line.split(","))

    venues = [v for v in VENUES if len(TRADE_LAYOUTS[(v, kind)]) == n_cols]
    expected = " or ".join(f"{len(TRADE_LAYOUTS[(v, kind)])} ({v})" for v in VENUES)
    if not venues:
        raise _fail(name, f"{n_cols} columns, but a {kind} dump has {expected}; is this the right file?")
    venue = venues[0]
    wanted = market or hint
    if wanted is not None and wanted != venue:
        source = f"market {wanted} was requested" if market else f"its path says {wanted}"
        raise _fail(name, f"{source}, but {n_cols} columns is the {venue} {kind} layout "
                          f"({', '.join(TRADE_LAYOUTS[(venue, kind)])}); a {wanted} {kind} dump has "
                          f"{len(TRADE_LAYOUTS[(wanted, kind)])} columns")
    columns = TRADE_LAYOUTS[(venue, kind)]
    if has_header:
        if "base_qty" in [f.lower() for f in first]:
            raise _fail(name, "a COIN-M (futures/cm) dump (base_qty column); only spot and USD-M are supported")
        roles = [HEADER_ROLES.get(f.lower()) for f in first]
        want = [HEADER_ROLES[c] for c in columns]
        if roles != want:
            raise _fail(name, f"unexpected header {','.join(first)}; a {venue} {kind} dump has "
                              f"{','.join(columns)}")
    return DumpFile(path, name, symbol, kind, period, venue, STORE_MARKETS[(venue, kind)], columns, has_header,
                    member, csv_bytes, digest, checksum)


# --------------------------------------------------------------------------------------------- parsing

def _reader(dump: DumpFile, fh: BinaryIO) -> pacsv.CSVStreamingReader:
    cols = dump.columns
    id_col, time_col = cols[0], cols[5] if dump.kind == "aggTrades" else cols[4]
    types = {id_col: pa.int64(), cols[1]: pa.float64(), cols[2]: pa.float64(), time_col: pa.int64(),
             "is_buyer_maker": pa.bool_()}
    if dump.kind == "aggTrades":
        types["first_trade_id"] = pa.int64()
    ro = pacsv.ReadOptions(column_names=list(cols), skip_rows=1 if dump.has_header else 0, block_size=_BLOCK_BYTES)
    co = pacsv.ConvertOptions(column_types=types, include_columns=list(types), true_values=_TRUE,
                              false_values=_FALSE, null_values=[], strings_can_be_null=False,
                              quoted_strings_can_be_null=False)
    return pacsv.open_csv(fh, read_options=ro, convert_options=co)


def _batches(dump: DumpFile, counter: list[_Counting] | None = None) -> Iterator[pa.RecordBatch]:
    """Raw typed batches; CSV errors become DumpError naming the position."""
    with contextlib.ExitStack() as stack:
        wrapped = _Counting(_open_csv_bytes(stack, dump.path, dump.member))
        if counter is not None:
            counter.append(wrapped)
        rows = 0
        try:
            for batch in _reader(dump, wrapped):
                yield batch
                rows += batch.num_rows
        except pa.ArrowInvalid as exc:
            damage = _zip_damage(dump)
            if damage is not None:
                raise _fail(dump.name, f"zip is damaged ({damage}); download it again") from None
            line = rows + 1 + dump.has_header
            exact = _locate(dump, line, exc)
            where = f"at line {exact:,}" if exact else f"at or after line {line:,}"
            raise _fail(dump.name, f"malformed CSV {where} ({exc}); expected the "
                                   f"{dump.venue} {dump.kind} columns {','.join(dump.columns)}") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise _fail(dump.name, f"cannot read the file ({exc}); download it again") from exc


def _normalize(dump: DumpFile, batch: pa.RecordBatch, first_row: int) -> tuple[pa.Table, int, set[str]]:
    """Typed CSV batch → (writer.ARROW_SCHEMA table, rows skipped as invalid, time units seen); DumpError on bad
    values. `first_row` is the 0-based data row of the batch's first row (for messages)."""
    cols = dump.columns
    ids, price, qty = batch.column(cols[0]), batch.column(cols[1]), batch.column(cols[2])
    t = batch.column(cols[5] if dump.kind == "aggTrades" else cols[4])
    maker = batch.column("is_buyer_maker")
    skipped = 0
    if dump.kind == "aggTrades":
        invalid = pc.and_(pc.equal(batch.column("first_trade_id"), -1), pc.equal(price, 0.0))
        skipped = pc.sum(invalid).as_py() or 0
        if skipped:
            keep = pc.invert(invalid)
            ids, price, qty, t, maker = (pc.filter(a, keep) for a in (ids, price, qty, t, maker))

    def check(mask: pa.Array, values: pa.Array, what: str) -> None:
        if pc.any(mask).as_py():
            i = pc.index(mask, True).as_py()
            line = first_row + i + 1 + dump.has_header
            raise _fail(dump.name, f"line {line:,}: {what}, got {values[i].as_py()!r}")

    check(pc.less(ids, 0), ids, "trade ids must be >= 0")
    check(pc.greater_equal(ids, ID_MAX), ids, f"trade ids must be below {ID_MAX:.0e} (no exchange is near that)")
    check(pc.invert(pc.and_(pc.is_finite(price), pc.greater(price, 0.0))), price, "price must be a positive number")
    check(pc.invert(pc.and_(pc.is_finite(qty), pc.greater_equal(qty, 0.0))), qty, "quantity must be >= 0")
    is_ms = pc.and_(pc.greater_equal(t, 10**12), pc.less(t, 10**13))
    is_us = pc.and_(pc.greater_equal(t, 10**15), pc.less(t, 10**16))
    check(pc.invert(pc.or_(is_ms, is_us)), t, "time must be epoch ms (13 digits) or µs (16 digits)")
    units = {u for u, m in (("ms", is_ms), ("us", is_us)) if pc.any(m).as_py()}
    t_us = pc.if_else(is_ms, pc.multiply(t, 1000), t)
    lo, hi = period_bounds(dump.period)
    hi = min(hi, now_us() + MAX_AHEAD_US)
    outside = pc.invert(pc.and_(pc.greater_equal(t_us, lo), pc.less(t_us, hi)))
    if pc.any(outside).as_py():
        i = pc.index(outside, True).as_py()
        line = first_row + i + 1 + dump.has_header
        when = dt.datetime.fromtimestamp(t_us[i].as_py() / 1e6, dt.UTC).isoformat().replace("+00:00", "Z")
        raise _fail(dump.name, f"line {line:,}: time {when} is outside {dump.period} (the date in the file name, "
                               "UTC) or ahead of now; expected the trades of that period only")
    ts = t_us.cast(pa.timestamp("us", tz="UTC"))
    n = len(ids)
    table = pa.Table.from_arrays([
        pa.repeat(pa.scalar(dump.market, pa.string()), n),
        pa.repeat(pa.scalar(dump.symbol, pa.string()), n),
        ids, ts, price, qty, maker,
        pa.nulls(n, pa.timestamp("us", tz="UTC")),
        pa.repeat(pa.scalar(SOURCE, pa.string()), n),
    ], schema=ARROW_SCHEMA)
    return table, int(skipped), units


def check_dump(dump: DumpFile, progress: Callable[[int, int], None] | None = None) -> DumpCheck:
    """Parse and validate the whole file without writing anything; DumpError on the first bad value."""
    counter: list[_Counting] = []
    rows = skipped = 0
    units: set[str] = set()
    lo_ts = hi_ts = lo_id = hi_id = None
    data_rows = 0
    for batch in _batches(dump, counter):
        table, sk, u = _normalize(dump, batch, data_rows)
        data_rows += batch.num_rows
        rows += table.num_rows
        skipped += sk
        units |= u
        if table.num_rows:
            mm_t = pc.min_max(table.column("ts"))
            mm_i = pc.min_max(table.column("trade_id"))
            lo_ts = mm_t["min"].as_py() if lo_ts is None else min(lo_ts, mm_t["min"].as_py())
            hi_ts = mm_t["max"].as_py() if hi_ts is None else max(hi_ts, mm_t["max"].as_py())
            lo_id = mm_i["min"].as_py() if lo_id is None else min(lo_id, mm_i["min"].as_py())
            hi_id = mm_i["max"].as_py() if hi_id is None else max(hi_id, mm_i["max"].as_py())
        if progress is not None:
            progress(counter[0].count, dump.csv_bytes)
    if rows == 0:
        raise _fail(dump.name, "no trades in the file; expected CSV rows of trades")
    if hi_id - lo_id + 1 > _max_id_span(rows + skipped):
        raise _fail(dump.name, f"ids run from {lo_id:,} to {hi_id:,} for only {rows + skipped:,} rows; a dump's ids "
                               "are consecutive, so a row is damaged or does not belong to this file")
    return DumpCheck(dump, rows, skipped, lo_ts, hi_ts, lo_id, hi_id, "+".join(sorted(units, reverse=True)))


def iter_tables(dump: DumpFile, batch_rows: int = 500_000) -> Iterator[pa.Table]:
    """The file's valid rows as writer.ARROW_SCHEMA tables of about `batch_rows` rows, in file order."""
    pending: list[pa.Table] = []
    n = data_rows = 0
    for batch in _batches(dump):
        table, _, _ = _normalize(dump, batch, data_rows)
        data_rows += batch.num_rows
        pending.append(table)
        n += table.num_rows
        while n >= batch_rows:
            whole = pa.concat_tables(pending)
            yield whole.slice(0, batch_rows)
            rest = whole.slice(batch_rows)
            pending, n = [rest], rest.num_rows
    if n:
        yield pa.concat_tables(pending)


# --------------------------------------------------------------------------------------------- import

def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; directories expand to the .zip / .csv files below them (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in (".zip", ".csv"))
            if not found:
                raise DumpError(f"{p}: directory holds no .zip or .csv dump files")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise DumpError(f"{p}: no such file or directory")
    return out


def _snapshot(dump: DumpFile, directory: Path) -> DumpFile:
    """`dump` read from a private copy in `directory`, so later passes read exactly these bytes; DumpError when the
    original changed since it was inspected (still being downloaded or written)."""
    copy = directory / f"{len(list(directory.iterdir()))}-{dump.path.name}"
    try:
        shutil.copyfile(dump.path, copy)
    except OSError as exc:
        raise _fail(dump.name, f"cannot take a private copy for the import in {directory} ({exc.strerror}); "
                               "free some disk space or import fewer files at once") from None
    if _sha256(copy) != dump.sha256:
        raise _fail(dump.name, "changed while being read (still downloading or being written?); "
                               "import it once it is complete")
    return dataclasses.replace(dump, path=copy)


def import_dumps(paths: Iterable[str | os.PathLike], db_path: str | os.PathLike, market: str | None = None,
                 progress: ProgressFn | None = None, batch_rows: int = 500_000, force: bool = False,
                 lock_budget_s: float = IMPORT_WRITE_BUDGET_S, names: dict[Path, str] | None = None,
                 snapshot: bool = True) -> list[ImportResult]:
    """Import dump files into the tick file at `db_path`.

    Every file is inspected and fully validated before anything is written: one bad file raises DumpError and
    changes nothing. Files whose bytes were imported before are skipped (`force` re-runs them; ids are still
    deduplicated). `names` maps a path to the original file name (uploads saved under a temporary name).
    With `snapshot` (the default) each file is checked and imported from a private copy (see module docstring);
    callers that pass private files already (uploads) switch it off.
    """
    files = expand_paths(paths)
    names = names or {}
    dumps = [inspect_dump(p, market, names.get(p)) for p in files]
    if not snapshot:
        return _import_checked(dumps, Path(db_path), progress, batch_rows, force, lock_budget_s)
    parent = Path(db_path).parent
    with tempfile.TemporaryDirectory(prefix=".tickdesk-import-", dir=parent if parent.is_dir() else None) as tmp:
        dumps = [_snapshot(d, Path(tmp)) for d in dumps]
        return _import_checked(dumps, Path(db_path), progress, batch_rows, force, lock_budget_s)


def _import_checked(dumps: list[DumpFile], db_path: Path, progress: ProgressFn | None, batch_rows: int, force: bool,
                    lock_budget_s: float) -> list[ImportResult]:
    seen: dict[str, str] = {}
    for d in dumps:
        if d.sha256 in seen:
            raise DumpError(f"{d.name}: same content as {seen[d.sha256]}; pass each file once")
        seen[d.sha256] = d.name
    db_path = Path(db_path)
    done_before: dict[str, ImportRecord | None] = dict.fromkeys(seen)
    if db_path.exists():
        with app_write(db_path, lock_budget_s) as con:
            if is_demo_file(con):
                raise DumpError(f"{db_path} holds simulated demo ticks; import Binance history into a live tick "
                                "file (e.g. data/ticks.duckdb), real and simulated data never mix")
            done_before = {d.sha256: import_record(con, d.sha256) for d in dumps}
    todo = [d for d in dumps if force or not (done_before[d.sha256] and done_before[d.sha256].finished)]
    checks: dict[str, DumpCheck] = {}
    for i, d in enumerate(todo):
        cb = None
        if progress is not None:
            def cb(done: int, total: int, d=d, i=i) -> None:
                progress(Progress("check", d.name, i + 1, len(todo), done, total, "bytes"))
        checks[d.sha256] = check_dump(d, cb)
        c = checks[d.sha256]
        log.info("%s: %d rows of %s %s (%s, %s), %s → %s, checksum %s", d.name, c.rows, d.venue, d.kind,
                 "header" if d.has_header else "no header", c.time_unit,
                 c.first_ts.isoformat() if c.first_ts else "-", c.last_ts.isoformat() if c.last_ts else "-",
                 d.checksum)
    # nothing is created or changed before every file checked out
    with app_write(db_path, lock_budget_s, create=True) as con:
        ensure_history_schema(con)
    results: list[ImportResult] = []
    for d in dumps:
        rec = done_before[d.sha256]
        if d.sha256 not in checks:
            results.append(ImportResult(d.name, rec.market, rec.symbol, rec.kind, rec.rows_total, 0, 0, True, 0))
            log.info("%s: already imported on %s; skipped", d.name, rec.finished_at)
            continue
        results.append(_import_one(db_path, checks[d.sha256], todo.index(d) + 1, len(todo), progress, batch_rows,
                                   restart=force, lock_budget_s=lock_budget_s))
    return results


def _import_one(db_path: Path, check: DumpCheck, index: int, files: int, progress: ProgressFn | None,
                batch_rows: int, restart: bool, lock_budget_s: float) -> ImportResult:
    d = check.dump
    with app_write(db_path, lock_budget_s) as con:
        rec = import_begin(con, d.sha256, d.name, d.market, d.symbol, d.kind, check.rows, check.skipped_invalid,
                           check.first_ts, check.last_ts, restart=restart)
    resumed = rec.rows_done
    if resumed:
        log.info("%s: resuming after %d of %d rows", d.name, resumed, check.rows)
    skip, done, inserted = resumed, resumed, 0
    if progress is not None:
        progress(Progress("import", d.name, index, files, done, check.rows, "rows"))
    for table in iter_tables(d, batch_rows):
        if skip >= table.num_rows:
            skip -= table.num_rows
            continue
        if skip:
            table, skip = table.slice(skip), 0
        with app_write(db_path, lock_budget_s, atomic=True) as con:
            new = insert_dedup(con, table, db_path)
            import_advance(con, d.sha256, table.num_rows, new)
        done += table.num_rows
        inserted += new
        if progress is not None:
            progress(Progress("import", d.name, index, files, done, check.rows, "rows"))
    with app_write(db_path, lock_budget_s) as con:
        import_finish(con, d.sha256, check.first_id, check.last_id)
    result = ImportResult(d.name, d.market, d.symbol, d.kind, check.rows, inserted, resumed, False,
                          check.skipped_invalid)
    log.info("%s", result.summary())
    return result


def import_uploads(uploads: Sequence[tuple[str, bytes]], db_path: str | os.PathLike, market: str | None = None,
                   progress: ProgressFn | None = None, batch_rows: int = 500_000,
                   lock_budget_s: float = IMPORT_WRITE_BUDGET_S) -> list[ImportResult]:
    """Import uploaded dumps, each given as (original file name, bytes); same checks as the CLI, all or nothing
    for validation."""
    if not uploads:
        raise DumpError("no file given; expected one or more Binance trades/aggTrades dumps (.zip or .csv)")
    with tempfile.TemporaryDirectory(prefix="tickdesk-upload-") as tmp:
        names: dict[Path, str] = {}
        for i, (name, data) in enumerate(uploads):
            base = Path(name).name
            parse_name(base)
            path = Path(tmp) / f"upload-{i}{'.zip' if base.lower().endswith('.zip') else '.csv'}"
            path.write_bytes(data)
            names[path] = base
        return import_dumps(list(names), db_path, market=market, progress=progress, batch_rows=batch_rows,
                            lock_budget_s=lock_budget_s, names=names, snapshot=False)
