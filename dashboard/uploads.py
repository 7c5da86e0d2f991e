"""Uploaded CSVs: validation, parsing and the session's uploaded dataset.

Accepted (see docs/csv-formats.md):
- Binance klines (no header, 12 columns: open_time, open, high, low, close, volume, close_time, quote_volume,
  count, taker_buy_volume, taker_buy_quote_volume, ignore; times in ms or µs), or the same with a header row;
- plain OHLC with a header `time,open,high,low,close,volume` (time as ISO 8601 or epoch s/ms/µs; naive = UTC);
- ticks with a header `time,price,qty` (+ optional `symbol`, `trade_id`, `is_buyer_maker`; our own tick download
  works as is), or Binance trades / aggTrades dumps (7 / 8 columns, no header).
Anything else is rejected with an `UploadError` that says what is wrong and what is expected.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np
import pandas as pd
import streamlit as st

from core import plausible, timeframes
from core import symbols as _symbols_fact
from core.binance_csv import KLINE_COLUMNS, TRADE_LAYOUTS
from quantlib.bars import BAR_COLUMNS as _BAR_COLUMNS
from quantlib.bars import aggregate, resample

BAR_COLUMNS = list(_BAR_COLUMNS)
MAX_UPLOAD_BYTES = 100 * 1024 * 1024   # keep in step with server.maxUploadSize in .streamlit/config.toml
MAX_ROWS = 3_000_000
UPLOAD_MARKET = "upload"

# Header-less files by column count: Binance klines, spot trades, spot aggTrades.
HEADERLESS_LAYOUTS = {len(c): list(c) for c in (KLINE_COLUMNS, TRADE_LAYOUTS[("spot", "trades")],
                                                TRADE_LAYOUTS[("spot", "aggTrades")])}

TIME_ALIASES = ("time", "timestamp", "ts", "datetime", "date", "open_time", "transact_time")
QTY_ALIASES = ("qty", "quantity", "size", "amount", "volume")
ID_ALIASES = ("trade_id", "id", "agg_trade_id", "a")
TRADES_ALIASES = ("trades", "count", "number_of_trades")
QUOTE_VOLUME_ALIASES = ("quote_volume", "quote_asset_volume")
EXPECTED = ("expected one of: Binance klines CSV (12 columns, no header); a header `time,open,high,low,close,volume`; "
            "or ticks with a header `time,price,qty` (optional `symbol`, `trade_id`, `is_buyer_maker`); "
            "or a Binance trades/aggTrades CSV")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}(USDT|USDC|FDUSD|BUSD|TUSD|USD|BTC|ETH|BNB|EUR|TRY|DAI)$")
_SESSION_KEY = "_tickdesk_upload"


class UploadError(ValueError):
    """An uploaded file was rejected; the message says what is wrong and what is expected."""


def empty_bars() -> pd.DataFrame:
    index = pd.DatetimeIndex([], tz="UTC", name="ts")
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "trades" else "float64") for c in BAR_COLUMNS},
                        index=index)


@dataclass(frozen=True)
class ParsedFile:
    """One accepted file: `kind` 'ohlc' (frames = bars by symbol) or 'ticks' (frames = ts, price, qty, ...)."""

    name: str
    kind: str
    frames: dict[str, pd.DataFrame]
    bar_seconds: int | None = None


# ---------------------------------------------------------------- parsing
def _line_of(mask: pd.Series, header: bool) -> int:
    """1-based file line of the first True row of `mask`."""
    pos = int(np.flatnonzero(mask.to_numpy())[0])
    return pos + 1 + (1 if header else 0)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _booleans(raw: pd.Series) -> pd.Series:
    s = raw.astype(str).str.strip().str.lower()
    return s.isin(["true", "1", "t", "yes"])


def _pick(cols: list[str], aliases: tuple[str, ...]) -> str | None:
    return next((a for a in aliases if a in cols), None)


def bar_label(seconds: int) -> str:
    """A bar length as the sidebar names it (`1m`, `1h`), else in plain units (`90s`, `2m 30s`)."""
    for name, n in timeframes.SECONDS.items():
        if n == seconds:
            return name
    m, s = divmod(int(seconds), 60)
    return f"{m}m {s}s" if m and s else f"{m}m" if m else f"{s}s"


def symbol_from_name(name: str) -> str | None:
    """`BTCUSDT-1m-2024-05-01.csv` → BTCUSDT (first token of the file name, if it looks like a pair)."""
    token = re.split(r"[-_ .]", PurePath(name).name)[0].upper()
    return token if _SYMBOL_RE.match(token) else None


CHUNK_ROWS = 50_000   # rows parsed as text at a time; only numeric columns are kept between chunks


def _check_utf8(name: str, data: bytes) -> None:
    """The whole file must decode as UTF-8 (checked block by block: no decoded copy of the file is kept)."""
    dec = codecs.getincrementaldecoder("utf-8-sig")()
    step = 1 << 20
    try:
        for i in range(0, len(data), step):
            dec.decode(data[i:i + step], final=i + step >= len(data))
    except UnicodeDecodeError:
        raise UploadError(f"{name}: not a text CSV (cannot be read as UTF-8 text). A Binance dump .zip goes into the "
                          "tick file through **Import Binance history** below; to analyse it here, upload the "
                          ".csv inside the zip") from None


def _first_line_of(data: bytes) -> str:
    """The first non-blank line of the file (decoding only as much as it takes)."""
    dec = codecs.getincrementaldecoder("utf-8-sig")()
    text, step, i = "", 1 << 16, 0
    while i < len(data):
        text += dec.decode(data[i:i + step], final=i + step >= len(data))
        i += step
        lines = text.splitlines(keepends=True)
        for line in lines:
            if line.strip() and (line != lines[-1] or line.rstrip("\r\n") != line):  # a complete non-blank line
                return line.strip()
        if len(text) > 1 << 20 and not text.strip():
            text = ""  # a long run of blank lines: nothing to keep
    return _first_line(text)


def _chunks(data: bytes, header: bool, names: list[str] | None, name: str = "the file") -> Iterator[pd.DataFrame]:
    """The file as text frames of CHUNK_ROWS rows (one parser over the whole file: line numbers, the header and
    malformed-row checks are those of a single read). A malformed row raises an UploadError naming the file and
    the line."""
    try:
        with pd.read_csv(io.BytesIO(data), header=0 if header else None, names=names, dtype=str,
                         encoding="utf-8-sig", skip_blank_lines=True, on_bad_lines="error", engine="c", index_col=False,
                         chunksize=CHUNK_ROWS) as reader:
            yield from reader
    except (pd.errors.ParserError, ValueError) as exc:
        raise UploadError(_malformed(name, data, header, str(exc))) from None


def _malformed(name: str, data: bytes, header: bool, parser_text: str) -> str:
    """The parser's complaint in plain words: the file, the line and what was expected (no parser internals)."""
    first = _first_line_of(data)
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", parser_text)
    if m:
        want, line, saw = (int(g) for g in m.groups())
        return _wrong_width(name, line, saw, want, header, first)
    m = re.search(r"EOF inside string starting at row (\d+)", parser_text)
    if m:
        return (f"{name}: a quote (\") opened near line {int(m.group(1)) + 1} is never closed; expected every quoted "
                "field to end with a quote on the same line. Fix that line and upload again.")
    return f"{name}: not a well-formed CSV (its rows could not be split into comma-separated fields); {EXPECTED}"


def _wrong_width(name: str, line: int, saw: int, want: int, header: bool, first: str) -> str:
    shown = first if len(first) <= 80 else first[:77] + "..."
    return (f"{name}: line {line} has {saw} comma-separated field{'s' if saw != 1 else ''}; expected {want}, as in "
            f"the {'header' if header else 'first line'} (`{shown}`). Fix or remove that line and upload again.")


def _second_line(data: bytes) -> tuple[int, str] | None:
    """(line number, text) of the second non-blank line, None if there is none (reads only up to it)."""
    seen = 0
    with io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                seen += 1
                if seen == 2:
                    return n, line.strip()
    return None


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB".replace(".0 MB", " MB") if n >= 2**20 else f"{n / 1024:.0f} KB"


def parse_csv(name: str, data: bytes, symbol: str | None = None, max_bytes: int | None = None) -> ParsedFile:
    """Validate and parse one uploaded file. `symbol` names the instrument when the file does not.

    The file is read in chunks of CHUNK_ROWS rows: each chunk's text cells are checked and turned into numbers,
    then dropped, so memory follows the numeric columns (~8 bytes per value), not the text of the whole file.
    Every check and message is that of reading the file at once (counts over the whole file, the first bad value
    and its line)."""
    max_bytes = MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    if len(data) == 0:
        raise UploadError(f"{name}: the file is empty; {EXPECTED}")
    if len(data) > max_bytes:
        raise UploadError(f"{name}: the file is {_size(len(data))}; the limit is {_size(max_bytes)}. "
                          "Upload a shorter period (e.g. one day of ticks) or use `python ingestor.py import`.")
    _check_utf8(name, data)
    first = _first_line_of(data)
    if not first:
        raise UploadError(f"{name}: the file has no rows; {EXPECTED}")
    tokens = [t.strip().strip('"') for t in first.split(",")]
    header = not _is_number(tokens[0])
    names = None
    if not header:
        names = HEADERLESS_LAYOUTS.get(len(tokens))
        if names is None:
            raise UploadError(f"{name}: {len(tokens)} columns without a header row; {EXPECTED}")
    else:  # a first data row longer than the header would silently become an index column: refused here
        second = _second_line(data)
        want = len(next(csv.reader([first])))
        width = len(next(csv.reader([second[1]]))) if second else want
        if width != want:
            raise UploadError(_wrong_width(name, second[0], width, want, header, first))
    acc = _Accumulator(data, header, names, symbol, name)
    for chunk in _chunks(data, header, names, name):  # a malformed row raises here, before any other check
        acc.add(chunk)
    try:
        return acc.finish()
    except UploadError as exc:
        raise UploadError(f"{name}: {exc}") from None


@dataclass
class _Bad:
    """Rows of one check that failed: how many, and the first one (text and 0-based row)."""

    count: int = 0
    first: str | None = None
    pos: int = -1

    def add(self, mask: np.ndarray, raw: pd.Series, offset: int) -> None:
        n = int(mask.sum())
        if n and self.pos < 0:
            i = int(np.flatnonzero(mask)[0])
            self.first, self.pos = str(raw.iloc[i]), offset + i
        self.count += n


class _Accumulator:
    """Checks each text chunk and keeps its numeric columns; `finish` runs the whole-file checks in the order of
    a single read and builds the ParsedFile (see parse_csv)."""

    def __init__(self, data: bytes, header: bool, names: list[str] | None, symbol: str | None, name: str) -> None:
        self.data, self.header, self.names, self.symbol, self.name = data, header, names, symbol, name
        self.rows = 0
        self.cols: list[str] | None = None
        self.raw_cols: list[str] = []
        self.kind: str | None = None
        self.kind_error: UploadError | None = None
        self.tcol: str | None = None
        self.num_cols: list[str] = []
        self.numbers: dict[str, list[np.ndarray]] = {}
        self.bad: dict[str, _Bad] = {}
        self.t_parts: list[tuple[str, object]] = []    # ('num', float64 array) or ('iso', datetime Series, UTC)
        self.t_nat = _Bad()
        self.sym_parts: list[pd.Categorical] = []
        self.sym_bad = _Bad()
        self.idc: str | None = None
        self.id_parts: list[np.ndarray] = []
        self.ids_ok = True
        self.ibm_parts: list[np.ndarray] = []

    # --------------------------------------------------------------------- per chunk
    def add(self, chunk: pd.DataFrame) -> None:
        offset = self.rows
        self.rows += len(chunk)
        if self.cols is None:
            self._columns(chunk)
        if self.kind_error is not None or self.rows > MAX_ROWS or not len(chunk):
            return  # the file is refused anyway (row limit or columns); only its rows are counted
        chunk.columns = self.cols
        self._times(chunk[self.tcol], offset)
        if "symbol" in self.cols:
            raw = chunk["symbol"]
            syms = raw.astype(str).str.strip().str.upper()
            self.sym_bad.add(~syms.map(_symbols_fact.is_symbol).to_numpy(dtype=bool), raw.astype(str).str[:40],
                             offset)
            self.sym_parts.append(pd.Categorical(syms))
        for c in self.num_cols:
            raw = chunk[c]
            v = pd.to_numeric(raw, errors="coerce")
            self.bad.setdefault(c, _Bad()).add((v.isna() | ~np.isfinite(v.fillna(0))).to_numpy(), raw, offset)
            self.numbers.setdefault(c, []).append(v.astype("float64").to_numpy())
        if self.idc:
            ids = pd.to_numeric(chunk[self.idc], errors="coerce")
            self.ids_ok = self.ids_ok and bool(ids.notna().all())
            if self.ids_ok:
                self.id_parts.append(ids.astype("int64").to_numpy())
        if self.kind == "ticks" and "is_buyer_maker" in self.cols:
            self.ibm_parts.append(_booleans(chunk["is_buyer_maker"]).to_numpy())

    def _columns(self, chunk: pd.DataFrame) -> None:
        self.raw_cols = list(chunk.columns)
        self.cols = cols = [str(c).strip().lower().replace(" ", "_") for c in chunk.columns]
        self.tcol = _pick(cols, TIME_ALIASES)
        try:
            self.kind = _kind(cols, self.tcol)
        except UploadError as exc:
            self.kind_error = exc
            return
        if self.kind == "ohlc":
            self.num_cols = ["open", "high", "low", "close", "volume"]
            self.num_cols += [c for c in (_pick(cols, QUOTE_VOLUME_ALIASES), _pick(cols, TRADES_ALIASES)) if c]
        else:
            self.num_cols = ["price", _pick(cols, QTY_ALIASES)]
            self.idc = _pick(cols, ID_ALIASES)

    def _times(self, raw: pd.Series, offset: int) -> None:
        numeric = pd.to_numeric(raw, errors="coerce")
        if numeric.notna().all():
            self.t_parts.append(("num", numeric.to_numpy(dtype="float64")))
        else:
            self.t_parts.append(("iso", self._iso(raw, offset)))

    def _iso(self, raw: pd.Series, offset: int) -> pd.Series:
        ts = pd.to_datetime(raw.astype(str).str.strip(), utc=True, errors="coerce", format="ISO8601")
        self.t_nat.add(ts.isna().to_numpy(), raw, offset)
        return ts

    def _raw_at(self, col: str, pos: int) -> str:
        """Text of column `col` on row `pos` (a second pass over the file; only to word an error)."""
        seen = 0
        for chunk in _chunks(self.data, self.header, self.names, self.name):
            if pos < seen + len(chunk):
                return str(chunk.iloc[pos - seen, self.cols.index(col)])
            seen += len(chunk)
        return ""

    # ------------------------------------------------------------------- whole file
    def finish(self) -> ParsedFile:
        if self.rows == 0:
            raise UploadError(f"only a header row, no data; {EXPECTED}")
        if self.rows > MAX_ROWS:
            raise UploadError(f"{self.rows:,} rows; the limit is {MAX_ROWS:,}. Upload a shorter period.")
        if self.kind_error is not None:
            raise self.kind_error
        ts = self._timestamps()
        syms = self._symbols()
        for c in self.num_cols:
            b = self.bad[c]
            if b.count and (self.kind == "ticks" or c in ("open", "high", "low", "close", "volume")):
                raise UploadError(f"column `{c}`: {b.count} value(s) are not numbers (first: {b.first!r} on line "
                                  f"{self._line(b.pos)})")
        num = {c: np.concatenate(parts) for c, parts in self.numbers.items()}
        self.numbers.clear()
        if self.kind == "ohlc":
            return self._ohlc(num, ts, syms)
        return self._ticks(num, ts, syms)

    def _line(self, pos: int) -> int:
        return pos + 1 + (1 if self.header else 0)

    def _timestamps(self) -> pd.Series:
        """parse_times over the whole column: epoch by the median magnitude, else ISO 8601 for every row."""
        col = self.tcol
        if all(kind == "num" for kind, _ in self.t_parts):
            numeric = pd.Series(np.concatenate([v for _, v in self.t_parts]))
            mag = float(numeric.abs().median())
            unit = "s" if mag < 1e11 else "ms" if mag < 1e14 else "us" if mag < 1e17 else "ns"
            ts = pd.to_datetime(numeric.astype("int64") if unit != "s" else numeric, unit=unit, utc=True)
        else:
            if any(kind == "num" for kind, _ in self.t_parts):  # a column mixing epochs and text: all read as ISO
                self.t_nat, parts, seen = _Bad(), [], 0
                for chunk in _chunks(self.data, self.header, self.names, self.name):
                    chunk.columns = self.cols
                    parts.append(self._iso(chunk[col], seen))
                    seen += len(chunk)
                self.t_parts = [("iso", p) for p in parts]
            if self.t_nat.count:
                raise UploadError(f"column `{col}`: {self.t_nat.count} value(s) are not timestamps (first: "
                                  f"{self.t_nat.first!r} on line {self._line(self.t_nat.pos)}); expected ISO 8601 "
                                  "such as 2024-05-01T12:00:00Z, or epoch seconds / milliseconds / microseconds")
            ts = pd.concat([v for _, v in self.t_parts], ignore_index=True)  # the finest unit of any chunk
        self.t_parts = []
        lo, hi = pd.Timestamp(plausible.TS_MIN), pd.Timestamp(plausible.TS_MAX)
        out_of_range = ((ts < lo) | (ts >= hi)).to_numpy()
        if out_of_range.any():
            pos = int(np.flatnonzero(out_of_range)[0])
            raise UploadError(f"column `{col}`: {int(out_of_range.sum())} timestamp(s) outside 2009–2100 (first: "
                              f"{self._raw_at(col, pos)!r} on line {self._line(pos)}); epoch values must be seconds, "
                              "milliseconds or microseconds since 1970-01-01 UTC")
        return ts

    def _symbols(self) -> np.ndarray:
        if "symbol" in self.cols:
            if self.sym_bad.count:
                raise UploadError(f"column `symbol`: {self.sym_bad.first!r} on line {self._line(self.sym_bad.pos)} "
                                  f"is not a symbol; expected {_symbols_fact.EXPECTED}")
            return pd.api.types.union_categoricals(self.sym_parts).to_numpy() if len(self.sym_parts) > 1 \
                else np.asarray(self.sym_parts[0])
        sym = (self.symbol or "").strip().upper() or symbol_from_name(self.name)
        if sym is None:
            raise UploadError("cannot tell which symbol the file holds: add a `symbol` column, name the file like "
                              "`BTCUSDT-1m-2024-05-01.csv`, or type the symbol in the box above the uploader")
        if not _symbols_fact.is_symbol(sym):
            raise UploadError(f"symbol {sym[:40]!r} is not a symbol; expected {_symbols_fact.EXPECTED}")
        return np.full(self.rows, sym, dtype=object)

    def _extra_number(self, c: str | None) -> None:
        b = self.bad.get(c) if c else None
        if b is not None and b.count:
            raise UploadError(f"column `{c}`: {b.count} value(s) are not numbers (first: {b.first!r} on line "
                              f"{self._line(b.pos)})")

    def _ohlc(self, num: dict[str, np.ndarray], ts: pd.Series, syms: np.ndarray) -> ParsedFile:
        """Bars by symbol (checked: positive prices, high/low bracketing, one bar per time); bar length = min step."""
        out = pd.DataFrame({c: num[c] for c in ("open", "high", "low", "close", "volume")})
        _check_ohlc(out, self.header)
        qv, tr = _pick(self.cols, QUOTE_VOLUME_ALIASES), _pick(self.cols, TRADES_ALIASES)
        self._extra_number(qv)
        out["quote_volume"] = num[qv] if qv else out["volume"] * (out["high"] + out["low"] + out["close"]) / 3.0
        self._extra_number(tr)
        out["trades"] = num[tr].astype("int64") if tr else 0
        out["vwap"] = (out["quote_volume"] / out["volume"]).where(out["volume"] > 0)
        out.index = pd.DatetimeIndex(ts, name="ts")
        out["symbol"] = syms
        frames: dict[str, pd.DataFrame] = {}
        steps: list[int] = []
        for sym, g in out.groupby("symbol", sort=True):
            g = g.drop(columns="symbol").sort_index()
            dup = g.index.duplicated()
            if dup.any():
                raise UploadError(f"{int(dup.sum())} duplicate bar time(s) for {sym} (first: {g.index[dup][0]}); "
                                  "each bar must appear once")
            if len(g) > 1:
                steps.append(int(pd.Series(g.index).diff().dt.total_seconds().min()))
            frames[str(sym)] = g[BAR_COLUMNS]
        return ParsedFile(self.name, "ohlc", frames, min(steps) if steps else 60)

    def _ticks(self, num: dict[str, np.ndarray], ts: pd.Series, syms: np.ndarray) -> ParsedFile:
        """Ticks by symbol (ts, price, qty, optional trade_id / is_buyer_maker) in (ts, trade_id) order."""
        qcol = self.num_cols[1]
        price, qty = pd.Series(num["price"]), pd.Series(num[qcol])
        if (price <= 0).any() or (qty < 0).any():
            bad = (price <= 0) | (qty < 0)
            raise UploadError(f"{int(bad.sum())} row(s) with price <= 0 or negative {qcol} (first on line "
                              f"{_line_of(bad, self.header)}); prices must be positive")
        out = pd.DataFrame({"ts": ts.reset_index(drop=True), "price": num["price"], "qty": num[qcol]})
        num.clear()
        if self.idc and self.ids_ok:
            out["trade_id"] = np.concatenate(self.id_parts)
        if self.ibm_parts:
            out["is_buyer_maker"] = np.concatenate(self.ibm_parts)
        self.id_parts = self.ibm_parts = []
        order = ["ts", "trade_id"] if "trade_id" in out.columns else ["ts"]
        frames = {}
        for sym, rows in _groups(syms):
            g = out if rows is None else out.take(rows)
            frames[sym] = _sorted(g, order)
        return ParsedFile(self.name, "ticks", frames)


def _groups(syms: np.ndarray | pd.Categorical) -> Iterator[tuple[str, np.ndarray | None]]:
    """(symbol, its row positions) in symbol order; positions None when the file holds one symbol only."""
    codes, uniques = pd.factorize(syms, sort=True)
    if len(uniques) == 1:
        yield str(uniques[0]), None
        return
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    for k, sym in enumerate(uniques):
        yield str(sym), order[bounds[k]:bounds[k + 1]]


def _sorted(g: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """`g` stably sorted by the `order` columns with a fresh index (no copy when it is in order already)."""
    keys = [g[c].astype("int64").to_numpy() for c in reversed(order)]
    idx = np.lexsort(keys)
    if not (idx[1:] < idx[:-1]).any():
        return g.reset_index(drop=True)
    return g.take(idx).reset_index(drop=True)


def _kind(cols: list[str], tcol: str | None) -> str:
    """'ohlc' (open/high/low/close columns) or 'ticks' (a price column); else which columns are missing."""
    if any(c in cols for c in ("open", "high", "low", "close")):
        missing = [c for c in ("open", "high", "low", "close", "volume") if c not in cols]
        if tcol is None:
            missing.insert(0, "time")
        if missing:
            raise UploadError(f"missing column(s) {', '.join(missing)} (found: {', '.join(cols)}); "
                              "expected a header `time,open,high,low,close,volume` or Binance klines")
        return "ohlc"
    if "price" in cols:
        qcol = _pick(cols, QTY_ALIASES)
        missing = (["time"] if tcol is None else []) + (["qty"] if qcol is None else [])
        if missing:
            raise UploadError(f"missing column(s) {', '.join(missing)} (found: {', '.join(cols)}); "
                              "expected a tick header `time,price,qty`")
        return "ticks"
    raise UploadError(f"unrecognised columns {', '.join(cols)}; {EXPECTED}")


def _check_ohlc(b: pd.DataFrame, header: bool) -> None:
    if (b[["open", "high", "low", "close"]] <= 0).any(axis=None):
        bad = (b[["open", "high", "low", "close"]] <= 0).any(axis=1)
        raise UploadError(f"{int(bad.sum())} row(s) with a price <= 0 (first on line {_line_of(bad, header)})")
    tol = 1e-9 * b["high"].abs()
    bad = (b["high"] + tol < b[["open", "close", "low"]].max(axis=1)) | (b["low"] - tol > b[["open", "close"]].min(axis=1))
    if bad.any():
        raise UploadError(f"{int(bad.sum())} row(s) where high/low do not bracket open/close (first on line "
                          f"{_line_of(bad, header)}); check the column order time,open,high,low,close,volume")
    if (b["volume"] < 0).any():
        raise UploadError(f"negative volume (first on line {_line_of(b['volume'] < 0, header)})")


# ---------------------------------------------------------------- the session's uploaded dataset
@dataclass(frozen=True)
class UploadedData:
    """Everything uploaded in this session, merged by symbol (one kind at a time)."""

    kind: str
    files: tuple[str, ...]
    frames: dict[str, pd.DataFrame]
    bar_seconds: int | None
    digest: str
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def rows(self) -> int:
        return sum(len(f) for f in self.frames.values())

    def _native_bars(self) -> dict[str, pd.DataFrame]:
        if self.kind == "ohlc":
            return self.frames
        if "1s" not in self._memo:
            self._memo["1s"] = {s: resample(f, "1s") for s, f in self.frames.items()}
        return self._memo["1s"]

    def bars(self, timeframe: str) -> tuple[dict[str, pd.DataFrame], str | None]:
        """Bars per symbol at `timeframe` (or the file's own bar length if that is coarser), and a note if so."""
        want = timeframes.seconds(timeframe)
        if timeframe in self._memo:
            return self._memo[timeframe]
        if self.kind == "ticks":
            result = ({s: resample(f, timeframe) for s, f in self.frames.items()}, None)
        elif want <= (self.bar_seconds or want):
            own = bar_label(self.bar_seconds)
            note = None if want == self.bar_seconds else (
                f"The uploaded bars are {own} long, longer than the {timeframe} timeframe picked, so they are shown "
                f"as they are; a timeframe of {own} or longer resamples them.")
            result = (self.frames, note)
        else:
            result = ({s: aggregate(f, want) for s, f in self.frames.items()}, None)
        self._memo[timeframe] = result
        return result

    def catalog(self) -> pd.DataFrame:
        rows = []
        for sym, f in self.frames.items():
            ts = f["ts"] if self.kind == "ticks" else f.index.to_series()
            last = f["price"].iloc[-1] if self.kind == "ticks" else f["close"].iloc[-1]
            rows.append({"market": UPLOAD_MARKET, "symbol": sym, "ticks": len(f), "first_ts": ts.min(),
                         "last_ts": ts.max(), "last_price": float(last)})
        return pd.DataFrame(rows)

    def summary(self, window_s: int) -> pd.DataFrame:
        """Same columns as tickstore.queries.latest, from the uploaded bars over `window_s` before each last bar."""
        rows = []
        for sym, b in self._native_bars().items():
            if b.empty:
                continue
            b = b.loc[b.index >= b.index[-1] - pd.Timedelta(seconds=window_s)]
            rows.append({"market": UPLOAD_MARKET, "symbol": sym, "last_price": b["close"].iloc[-1],
                         "first_price": b["open"].iloc[0], "high": b["high"].max(), "low": b["low"].min(),
                         "volume": b["volume"].sum(), "quote_volume": b["quote_volume"].sum(),
                         "trades": int(b["trades"].sum()), "last_ts": b.index[-1]})
        df = pd.DataFrame(rows)
        if not df.empty:
            df["change"] = df["last_price"] / df["first_price"] - 1.0
        return df


def combine(parsed: list[ParsedFile]) -> UploadedData:
    """Merge accepted files (same kind) into one dataset; a symbol in two files is concatenated in time order."""
    kinds = {p.kind for p in parsed}
    if len(kinds) > 1:
        raise UploadError("these files mix OHLC bars and ticks; upload one kind at a time")
    kind = kinds.pop()
    merged: dict[str, list[pd.DataFrame]] = {}
    for p in parsed:
        for sym, f in p.frames.items():
            merged.setdefault(sym, []).append(f)
    frames: dict[str, pd.DataFrame] = {}
    for sym, parts in merged.items():
        if kind == "ohlc":
            f = pd.concat(parts).sort_index()
            frames[sym] = f.loc[~f.index.duplicated(keep="last")]
        else:
            frames[sym] = pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable").reset_index(drop=True)
    steps = [p.bar_seconds for p in parsed if p.bar_seconds]
    digest = hashlib.sha1("|".join(f"{p.name}:{sum(len(f) for f in p.frames.values())}" for p in parsed).encode()
                          ).hexdigest()[:12]
    return UploadedData(kind, tuple(p.name for p in parsed), frames, max(steps) if steps else None, digest)


# ---------------------------------------------------------------- kept across reloads
# A reload starts a new session (its session state is empty) but keeps the URL: the dataset is kept by the server
# process under a random id that the URL carries (`?src=upload&up=<id>`), so a reload, a bookmark in the same
# browser or a second tab finds it again. Bounded: the newest MAX_KEPT datasets and at most MAX_KEPT_BYTES of
# frames (the newest one always stays); a server restart forgets them all.
KEEP_PARAM = "up"
MAX_KEPT = 8
MAX_KEPT_BYTES = 1 << 30
_ID_KEY = "_tickdesk_upload_id"
_LOST_KEY = "_tickdesk_upload_lost"


def _nbytes(ds: UploadedData) -> int:
    return int(sum(f.memory_usage(index=True, deep=False).sum() for f in ds.frames.values()))


class _Kept:
    """Uploaded datasets by id, least recently used first (thread-safe: sessions run in their own threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[UploadedData, int]] = OrderedDict()

    def put(self, ds: UploadedData) -> str:
        uid = secrets.token_urlsafe(9)
        with self._lock:
            self._items[uid] = (ds, _nbytes(ds))
            while len(self._items) > 1 and (len(self._items) > MAX_KEPT or
                                            sum(n for _, n in self._items.values()) > MAX_KEPT_BYTES):
                self._items.popitem(last=False)
        return uid

    def get(self, uid: str) -> UploadedData | None:
        with self._lock:
            item = self._items.get(uid)
            if item is None:
                return None
            self._items.move_to_end(uid)
            return item[0]

    def drop(self, uid: str) -> None:
        with self._lock:
            self._items.pop(uid, None)

    def __len__(self) -> int:
        return len(self._items)


@st.cache_resource(show_spinner=False)
def kept() -> _Kept:
    """The process-wide store of uploaded datasets."""
    return _Kept()


def current() -> UploadedData | None:
    """The dataset uploaded in this session; after a reload, the one the URL's upload id names (if still kept)."""
    ds = st.session_state.get(_SESSION_KEY)
    if ds is not None:
        uid = st.session_state.get(_ID_KEY)
        if uid and st.query_params.get(KEEP_PARAM) != uid:  # a page switch keeps only the widgets' parameters
            st.query_params[KEEP_PARAM] = uid
        return ds
    uid = st.query_params.get(KEEP_PARAM)
    ds = kept().get(uid) if uid else None
    if ds is not None:
        st.session_state[_SESSION_KEY], st.session_state[_ID_KEY] = ds, uid
    return ds


def store(ds: UploadedData | None) -> None:
    """Make `ds` this session's upload (kept for reloads, its id in the URL); None removes it."""
    uid = st.session_state.pop(_ID_KEY, None)
    if ds is None:
        st.session_state.pop(_SESSION_KEY, None)
        if uid:
            kept().drop(uid)
        st.query_params.pop(KEEP_PARAM, None)
        return
    uid = kept().put(ds)
    st.session_state[_SESSION_KEY], st.session_state[_ID_KEY] = ds, uid
    st.session_state.pop(_LOST_KEY, None)
    st.query_params[KEEP_PARAM] = uid


def check_lost() -> bool:
    """True when the URL names an upload this server no longer holds (restarted, or dropped to stay within its
    bounds): the id leaves the URL and `lost()` says so until a new upload."""
    uid = st.query_params.get(KEEP_PARAM)
    if not uid or current() is not None:
        return False
    st.query_params.pop(KEEP_PARAM, None)
    st.session_state[_LOST_KEY] = True
    return True


def lost() -> bool:
    """An upload named by the URL was no longer held when this session started (see check_lost)."""
    return bool(st.session_state.get(_LOST_KEY))


def forget_lost() -> None:
    st.session_state.pop(_LOST_KEY, None)
