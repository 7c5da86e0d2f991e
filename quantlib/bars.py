"""Ticks → OHLCV bars (bar start, UTC), the same definitions as tickstore's SQL resampling.

Definitions, per bar of length `timeframe` seconds, epoch-aligned (bar start = floor(ts / len) * len):

- open / close: price of the first / last trade in (ts, trade_id) order (input order breaks ties when
  there is no `trade_id` column);
- high / low: max / min price; volume = sum(qty); quote_volume = sum(price * qty); trades = count;
- vwap = quote_volume / volume, NaN when volume is 0.

Empty-bar policy: a bar with no trades is **dropped**; prices are never fabricated. Callers that need a
regular grid use `fill_gaps`, which carries the previous close (open = high = low = close) with zero
volume, zero trades, NaN vwap and `filled=True`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from quantlib.timeframes import timeframe_seconds

BAR_COLUMNS = ("open", "high", "low", "close", "volume", "quote_volume", "trades", "vwap")

_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _empty_bars(unit: str = "ns") -> pd.DataFrame:
    index = pd.DatetimeIndex(np.array([], dtype=f"datetime64[{unit}]")).tz_localize("UTC")
    index.name = "ts"
    frame = pd.DataFrame({c: np.array([], dtype=np.float64) for c in BAR_COLUMNS}, index=index)
    return frame.astype({"trades": np.int64})


def _tick_times(ticks: pd.DataFrame) -> pd.DatetimeIndex:
    if "ts" in ticks.columns:
        raw = ticks["ts"]
    elif isinstance(ticks.index, pd.DatetimeIndex):
        raw = ticks.index
    else:
        raise ValueError("ticks need a 'ts' column or a DatetimeIndex of trade times (tz-aware UTC)")
    try:
        ts = pd.DatetimeIndex(raw)
    except (TypeError, ValueError):
        raise ValueError(f"ticks 'ts' must be datetimes, got dtype {getattr(raw, 'dtype', type(raw))}") from None
    if ts.tz is None:
        raise ValueError("ticks 'ts' is naive; expected tz-aware UTC timestamps")
    if ts.hasnans:
        raise ValueError("ticks 'ts' contains missing timestamps")
    return ts.tz_convert("UTC")


def _trade_ids(raw: pd.Series) -> np.ndarray:
    """Trade ids as int64 (digit strings such as "123" are read as numbers); a clear error otherwise."""
    ids = pd.to_numeric(raw, errors="coerce")
    bad = ids.isna().to_numpy()
    if bad.any():
        first = raw.to_numpy()[bad][0]
        raise ValueError(f"ticks 'trade_id' must be integers; {int(bad.sum())} value(s) are not "
                         f"(first: {first!r})")
    values = ids.to_numpy(dtype=np.float64) if ids.dtype.kind == "f" else ids.to_numpy()
    if values.dtype.kind == "f":
        if not (np.isfinite(values).all() and (values == np.round(values)).all()):
            raise ValueError("ticks 'trade_id' must be integers")
        values = values.astype(np.int64)
    return values.astype(np.int64, copy=False)


def resample(ticks: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """OHLCV + quote_volume + trades + vwap per `timeframe` bar from one instrument's ticks.

    `ticks` has `ts` (tz-aware; a column or the index), `price`, `qty` and optionally `trade_id`.
    Returns a frame indexed by bar start `ts` (UTC) with columns `BAR_COLUMNS`; bars without trades are
    absent (see the module docstring and `fill_gaps`).
    """
    step_s = timeframe_seconds(timeframe)
    if not isinstance(ticks, pd.DataFrame):
        raise ValueError(f"ticks must be a DataFrame with ts, price, qty; got {type(ticks).__name__}")
    missing = [c for c in ("price", "qty") if c not in ticks.columns]
    if missing:
        raise ValueError(f"ticks are missing columns {missing}; expected ts, price, qty[, trade_id]")
    if len(ticks) == 0:
        unit = "ns"
        if "ts" in ticks.columns and hasattr(ticks["ts"].dtype, "unit"):
            unit = ticks["ts"].dtype.unit
        return _empty_bars(unit)

    ts = _tick_times(ticks)
    unit = ts.unit
    t = ts.asi8
    try:
        price = ticks["price"].to_numpy(dtype=np.float64)
        qty = ticks["qty"].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("ticks 'price' and 'qty' must be numeric") from None
    if not (np.isfinite(price).all() and np.isfinite(qty).all()):
        raise ValueError("ticks 'price'/'qty' contain NaN or inf")
    if price.min() <= 0 or qty.min() < 0:
        raise ValueError("ticks need price > 0 and qty >= 0")

    trade_id = _trade_ids(ticks["trade_id"]) if "trade_id" in ticks.columns else None
    dt = np.diff(t)
    if trade_id is not None:
        ordered = bool(np.all((dt > 0) | ((dt == 0) & (np.diff(trade_id) > 0))))
        order = None if ordered else np.lexsort((trade_id, t))
    else:
        order = None if bool(np.all(dt >= 0)) else np.argsort(t, kind="stable")
    if order is not None:
        t, price, qty = t[order], price[order], qty[order]

    step = step_s * _UNITS_PER_SECOND[unit]
    bucket = t // step  # floor division: epoch-aligned, also before 1970
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [t.shape[0]]))
    notional = price * qty
    volume = np.add.reduceat(qty, starts)
    quote = np.add.reduceat(notional, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(volume > 0, quote / np.where(volume > 0, volume, 1.0), np.nan)

    index = pd.DatetimeIndex((bucket[starts] * step).astype(f"datetime64[{unit}]")).tz_localize("UTC")
    index.name = "ts"
    return pd.DataFrame(
        {
            "open": price[starts],
            "high": np.maximum.reduceat(price, starts),
            "low": np.minimum.reduceat(price, starts),
            "close": price[ends - 1],
            "volume": volume,
            "quote_volume": quote,
            "trades": (ends - starts).astype(np.int64),
            "vwap": vwap,
        },
        index=index,
    )


def fill_gaps(bars: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Bars on a regular `timeframe` grid from the first to the last bar.

    Missing bars carry the previous close (open = high = low = close), volume = quote_volume = 0,
    trades = 0, vwap = NaN; the boolean column `filled` marks them. Existing bars are kept unchanged.
    """
    step_s = timeframe_seconds(timeframe)
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars are missing columns {missing}; expected the output of resample()")
    if len(bars) == 0:
        out = bars.copy()
        out["filled"] = np.array([], dtype=bool)
        return out
    if not isinstance(bars.index, pd.DatetimeIndex) or bars.index.tz is None:
        raise ValueError("bars need a tz-aware DatetimeIndex of bar starts")
    index = bars.index.tz_convert("UTC")
    if not (index.is_monotonic_increasing and index.is_unique):
        raise ValueError("bars index must be strictly increasing")
    step = pd.Timedelta(seconds=step_s)
    if ((index - index[0]) % step != pd.Timedelta(0)).any():
        raise ValueError(f"bars index is not on a regular {timeframe} grid")
    grid = pd.date_range(index[0], index[-1], freq=step, unit=index.unit, name="ts")
    out = bars.set_axis(index).reindex(grid)
    filled = out["close"].isna().to_numpy()
    close = out["close"].ffill()
    for col in ("open", "high", "low", "close"):
        out[col] = out[col].where(~filled, close)
    out.loc[filled, ["volume", "quote_volume"]] = 0.0
    out["trades"] = out["trades"].fillna(0).astype(np.int64)
    out["filled"] = filled
    return out


def aggregate(bars: pd.DataFrame, timeframe: str | int) -> pd.DataFrame:
    """Coarser bars from finer ones: epoch-aligned buckets of `timeframe` (a name such as "5m", or seconds),
    first open, max high, min low, last close, summed volume / quote_volume / trades, vwap =
    quote_volume / volume (NaN when 0). Empty buckets are absent, as in `resample`.

    On bars from `resample` this gives exactly `resample(ticks, timeframe)` (and so tickstore's SQL bars);
    it is also how uploaded OHLC files are shown at a coarser timeframe. The input bars must not be longer
    than the target (their smallest spacing at most `timeframe`).
    """
    step_s = timeframe if isinstance(timeframe, (int, np.integer)) and not isinstance(timeframe, bool) \
        else timeframe_seconds(timeframe)  # type: ignore[arg-type]
    if step_s <= 0:
        raise ValueError(f"timeframe must be a positive number of seconds or a name, got {timeframe!r}")
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars are missing columns {missing}; expected {', '.join(BAR_COLUMNS)}")
    if len(bars) == 0:
        return _empty_bars()
    if not isinstance(bars.index, pd.DatetimeIndex) or bars.index.tz is None:
        raise ValueError("bars need a tz-aware DatetimeIndex of bar starts (UTC)")
    index = bars.index.tz_convert("UTC")
    if not (index.is_monotonic_increasing and index.is_unique):
        raise ValueError("bars index must be strictly increasing (sorted, one row per bar start)")
    unit = index.unit
    t = index.asi8
    step = int(step_s) * _UNITS_PER_SECOND[unit]
    if t.shape[0] > 1 and int(np.diff(t).min()) > step:
        raise ValueError(f"bars are spaced at least {int(np.diff(t).min()) // _UNITS_PER_SECOND[unit]} s apart, "
                         f"longer than the {step_s} s target; aggregate only to a coarser timeframe")
    bucket = t // step
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [t.shape[0]]))
    cols = {c: bars[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close", "volume", "quote_volume")}
    volume = np.add.reduceat(cols["volume"], starts)
    quote = np.add.reduceat(cols["quote_volume"], starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(volume > 0, quote / np.where(volume > 0, volume, 1.0), np.nan)
    out_index = pd.DatetimeIndex((bucket[starts] * step).astype(f"datetime64[{unit}]")).tz_localize("UTC")
    out_index.name = "ts"
    return pd.DataFrame(
        {
            "open": cols["open"][starts],
            "high": np.maximum.reduceat(cols["high"], starts),
            "low": np.minimum.reduceat(cols["low"], starts),
            "close": cols["close"][ends - 1],
            "volume": volume,
            "quote_volume": quote,
            "trades": np.add.reduceat(bars["trades"].to_numpy(dtype=np.int64), starts),
            "vwap": vwap,
        },
        index=out_index,
    )
