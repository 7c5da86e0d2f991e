"""CSV exports: UTC ISO-8601 timestamps (`2024-05-01T12:00:00.123456Z`), columns as documented in docs/csv-formats.md."""
from __future__ import annotations

import datetime as dt
import re

import pandas as pd

ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

TICK_COLUMNS = ["ts", "symbol", "trade_id", "price", "qty", "is_buyer_maker"]
BAR_COLUMNS = ["ts", "symbol", "open", "high", "low", "close", "volume", "quote_volume", "trades", "vwap"]


def _iso(col: pd.Series) -> pd.Series:
    return pd.to_datetime(col, utc=True).dt.strftime(ISO_FORMAT)


def to_csv(df: pd.DataFrame, index_label: str | None = None) -> bytes:
    """CSV bytes; a DatetimeIndex becomes the first column (`index_label`, default its name or `ts`).
    Datetimes → ISO 8601 UTC with a `Z`; durations → seconds in a column renamed `<name>_s`."""
    out = df.copy()
    if isinstance(out.index, pd.DatetimeIndex):
        out.index = out.index.tz_convert("UTC") if out.index.tz else out.index.tz_localize("UTC")
        label = index_label or out.index.name or "ts"
        out = out.rename_axis(label).reset_index()
    for c in list(out.columns):
        if isinstance(out[c].dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = _iso(out[c])
        elif pd.api.types.is_timedelta64_dtype(out[c]):
            out[c] = out[c].dt.total_seconds()
            out = out.rename(columns={c: f"{c}_s"})
    return out.to_csv(index=False, float_format="%.10g", lineterminator="\n").encode()


def ticks_csv(ticks: pd.DataFrame, symbol: str) -> bytes:
    df = ticks.assign(symbol=symbol)
    return to_csv(df[[c for c in TICK_COLUMNS if c in df.columns]])


def bars_csv(frames: dict[str, pd.DataFrame]) -> bytes:
    """All symbols' bars in one long CSV, ordered by symbol then time."""
    parts = [f.rename_axis("ts").reset_index().assign(symbol=sym) for sym, f in frames.items() if len(f)]
    if not parts:
        return ",".join(BAR_COLUMNS).encode() + b"\n"
    df = pd.concat(parts, ignore_index=True)
    return to_csv(df[[c for c in BAR_COLUMNS if c in df.columns]])


def filename(*parts: object, ext: str = "csv") -> str:
    """`BTCUSDT-1m-20240501T1200Z.csv`-style names (symbol first, so our own files upload back cleanly)."""
    def clean(p: object) -> str:
        if isinstance(p, (dt.datetime, pd.Timestamp)):
            return pd.Timestamp(p).tz_convert("UTC").strftime("%Y%m%dT%H%MZ")
        return re.sub(r"[^A-Za-z0-9.]+", "_", str(p)).strip("_")
    return "-".join(clean(p) for p in parts if p not in (None, "")) + f".{ext}"
