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

import hashlib
import io
import re
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


def parse_times(raw: pd.Series, column: str, header: bool) -> pd.Series:
    """Epoch s/ms/µs/ns (by magnitude) or ISO 8601 text → tz-aware UTC; naive text is taken as UTC."""
    numeric = pd.to_numeric(raw, errors="coerce")
    if numeric.notna().all():
        mag = float(numeric.abs().median())
        unit = "s" if mag < 1e11 else "ms" if mag < 1e14 else "us" if mag < 1e17 else "ns"
        ts = pd.to_datetime(numeric.astype("int64") if unit != "s" else numeric, unit=unit, utc=True)
    else:
        ts = pd.to_datetime(raw.astype(str).str.strip(), utc=True, errors="coerce", format="ISO8601")
        if ts.isna().any():
            bad = ts.isna()
            line = _line_of(bad, header)
            raise UploadError(f"column `{column}`: {int(bad.sum())} value(s) are not timestamps (first: "
                              f"{str(raw[bad].iloc[0])!r} on line {line}); expected ISO 8601 such as "
                              "2024-05-01T12:00:00Z, or epoch seconds / milliseconds / microseconds")
    lo, hi = pd.Timestamp(plausible.TS_MIN), pd.Timestamp(plausible.TS_MAX)
    out_of_range = (ts < lo) | (ts >= hi)
    if out_of_range.any():
        line = _line_of(out_of_range, header)
        raise UploadError(f"column `{column}`: {int(out_of_range.sum())} timestamp(s) outside 2009–2100 (first: "
                          f"{str(raw[out_of_range].iloc[0])!r} on line {line}); epoch values must be seconds, "
                          "milliseconds or microseconds since 1970-01-01 UTC")
    return ts


def _numbers(df: pd.DataFrame, cols: list[str], header: bool) -> pd.DataFrame:
    for c in cols:
        v = pd.to_numeric(df[c], errors="coerce")
        bad = v.isna() | ~np.isfinite(v.fillna(0))
        if bad.any():
            raise UploadError(f"column `{c}`: {int(bad.sum())} value(s) are not numbers (first: "
                              f"{str(df.loc[bad, c].iloc[0])!r} on line {_line_of(bad, header)})")
        df[c] = v.astype("float64")
    return df


def _booleans(raw: pd.Series) -> pd.Series:
    s = raw.astype(str).str.strip().str.lower()
    return s.isin(["true", "1", "t", "yes"])


def _pick(cols: list[str], aliases: tuple[str, ...]) -> str | None:
    return next((a for a in aliases if a in cols), None)


def symbol_from_name(name: str) -> str | None:
    """`BTCUSDT-1m-2024-05-01.csv` → BTCUSDT (first token of the file name, if it looks like a pair)."""
    token = re.split(r"[-_ .]", PurePath(name).name)[0].upper()
    return token if _SYMBOL_RE.match(token) else None


def _read(text: str, header: bool, names: list[str] | None) -> pd.DataFrame:
    try:
        return pd.read_csv(io.StringIO(text), header=0 if header else None, names=names, dtype=str,
                           skip_blank_lines=True, on_bad_lines="error", engine="c")
    except (pd.errors.ParserError, ValueError) as exc:
        raise UploadError(f"not a well-formed CSV ({str(exc).splitlines()[0]}); {EXPECTED}") from None


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB".replace(".0 MB", " MB") if n >= 2**20 else f"{n / 1024:.0f} KB"


def parse_csv(name: str, data: bytes, symbol: str | None = None, max_bytes: int | None = None) -> ParsedFile:
    """Validate and parse one uploaded file. `symbol` names the instrument when the file does not."""
    max_bytes = MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    if len(data) == 0:
        raise UploadError(f"{name}: the file is empty; {EXPECTED}")
    if len(data) > max_bytes:
        raise UploadError(f"{name}: the file is {_size(len(data))}; the limit is {_size(max_bytes)}. "
                          "Upload a shorter period (e.g. one day of ticks) or use `python ingestor.py import`.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadError(f"{name}: not a text CSV (cannot decode as UTF-8). Zip archives go through "
                          "`python ingestor.py import`; here, upload the extracted .csv") from None
    first = _first_line(text)
    if not first:
        raise UploadError(f"{name}: the file has no rows; {EXPECTED}")
    tokens = [t.strip().strip('"') for t in first.split(",")]
    header = not _is_number(tokens[0])
    names = None
    if not header:
        names = HEADERLESS_LAYOUTS.get(len(tokens))
        if names is None:
            raise UploadError(f"{name}: {len(tokens)} columns without a header row; {EXPECTED}")
    df = _read(text, header, names)
    try:
        return _parse_frame(name, df, header, symbol)
    except UploadError as exc:
        raise UploadError(f"{name}: {exc}") from None


def _parse_frame(name: str, df: pd.DataFrame, header: bool, symbol: str | None) -> ParsedFile:
    if df.empty:
        raise UploadError(f"only a header row, no data; {EXPECTED}")
    if len(df) > MAX_ROWS:
        raise UploadError(f"{len(df):,} rows; the limit is {MAX_ROWS:,}. Upload a shorter period.")
    df.columns = [str(c).strip().lower().replace(" ", "_") for c in df.columns]
    cols = list(df.columns)
    tcol = _pick(cols, TIME_ALIASES)
    kind = _kind(cols, tcol)
    ts = parse_times(df[tcol], tcol, header)
    syms = _symbols(df, name, symbol, header)
    if kind == "ohlc":
        return _ohlc_file(name, df, ts, syms, header)
    return _ticks_file(name, df, ts, syms, header)


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


def _symbols(df: pd.DataFrame, name: str, symbol: str | None, header: bool = True) -> pd.Series:
    """Each row's symbol: the `symbol` column, else the one typed by the user, else the file name's; each must
    look like a symbol (core.symbols)."""
    if "symbol" in df.columns:
        syms = df["symbol"].astype(str).str.strip().str.upper()
        bad = ~syms.map(_symbols_fact.is_symbol)
        if bad.any():
            raise UploadError(f"column `symbol`: {str(df['symbol'][bad].iloc[0])[:40]!r} on line "
                              f"{_line_of(bad, header)} is not a symbol; expected {_symbols_fact.EXPECTED}")
        return syms
    sym = (symbol or "").strip().upper() or symbol_from_name(name)
    if sym is None:
        raise UploadError("cannot tell which symbol the file holds: add a `symbol` column, name the file like "
                          "`BTCUSDT-1m-2024-05-01.csv`, or type the symbol in the box above the uploader")
    if not _symbols_fact.is_symbol(sym):
        raise UploadError(f"symbol {sym[:40]!r} is not a symbol; expected {_symbols_fact.EXPECTED}")
    return pd.Series(sym, index=df.index)


def _ohlc_file(name: str, df: pd.DataFrame, ts: pd.Series, syms: pd.Series, header: bool) -> ParsedFile:
    """Bars by symbol (checked: positive prices, high/low bracketing, one bar per time); bar length = min step."""
    cols = list(df.columns)
    df = _numbers(df, ["open", "high", "low", "close", "volume"], header)
    out = pd.DataFrame({c: df[c].to_numpy() for c in ("open", "high", "low", "close", "volume")})
    _check_ohlc(out, header)
    qv = _pick(cols, QUOTE_VOLUME_ALIASES)
    out["quote_volume"] = (_numbers(df, [qv], header)[qv].to_numpy() if qv
                           else out["volume"] * (out["high"] + out["low"] + out["close"]) / 3.0)
    tr = _pick(cols, TRADES_ALIASES)
    out["trades"] = _numbers(df, [tr], header)[tr].to_numpy().astype("int64") if tr else 0
    out["vwap"] = (out["quote_volume"] / out["volume"]).where(out["volume"] > 0)
    out.index = pd.DatetimeIndex(ts, name="ts")
    out["symbol"] = syms.to_numpy()
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
    return ParsedFile(name, "ohlc", frames, min(steps) if steps else 60)


def _ticks_file(name: str, df: pd.DataFrame, ts: pd.Series, syms: pd.Series, header: bool) -> ParsedFile:
    """Ticks by symbol (ts, price, qty, optional trade_id / is_buyer_maker) in (ts, trade_id) order."""
    cols = list(df.columns)
    qcol = _pick(cols, QTY_ALIASES)
    df = _numbers(df, ["price", qcol], header)
    if (df["price"] <= 0).any() or (df[qcol] < 0).any():
        bad = (df["price"] <= 0) | (df[qcol] < 0)
        raise UploadError(f"{int(bad.sum())} row(s) with price <= 0 or negative {qcol} (first on line "
                          f"{_line_of(bad, header)}); prices must be positive")
    out = pd.DataFrame({"ts": ts.to_numpy(), "price": df["price"].to_numpy(), "qty": df[qcol].to_numpy()})
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    idc = _pick(cols, ID_ALIASES)
    if idc:
        ids = pd.to_numeric(df[idc], errors="coerce")
        if ids.notna().all():
            out["trade_id"] = ids.astype("int64").to_numpy()
    if "is_buyer_maker" in cols:
        out["is_buyer_maker"] = _booleans(df["is_buyer_maker"]).to_numpy()
    out["symbol"] = syms.to_numpy()
    frames = {}
    for sym, g in out.groupby("symbol", sort=True):
        order = ["ts", "trade_id"] if "trade_id" in g.columns else ["ts"]
        frames[str(sym)] = g.drop(columns="symbol").sort_values(order, kind="stable").reset_index(drop=True)
    return ParsedFile(name, "ticks", frames)


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
            note = None if want == self.bar_seconds else (
                f"The uploaded bars are {self.bar_seconds}s long; showing them as they are (pick {timeframe} or a "
                "coarser timeframe than the file to resample).")
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


def current() -> UploadedData | None:
    """The dataset uploaded in this session, if any."""
    return st.session_state.get(_SESSION_KEY)


def store(ds: UploadedData | None) -> None:
    if ds is None:
        st.session_state.pop(_SESSION_KEY, None)
    else:
        st.session_state[_SESSION_KEY] = ds
