"""Input checks shared by quantlib: fail early with a message that says what was expected.

Every public function accepts a pandas Series (ideally with a tz-aware UTC DatetimeIndex) or a plain 1-D
array / list; arrays get a RangeIndex. Naive datetime indexes are rejected (UTC everywhere); other time
zones are converted to UTC. NaN / inf values are rejected, never silently dropped.
"""
from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral

import numpy as np
import pandas as pd


def check_min(n: int, minimum: int, what: str = "observations") -> None:
    """ValueError "need >= {minimum} {what}, got {n}" when `n < minimum`."""
    if n < minimum:
        raise ValueError(f"need >= {minimum} {what}, got {n}")


def check_window(window: object, name: str = "window", minimum: int = 2) -> int:
    """A window length: an integer >= `minimum`."""
    if isinstance(window, bool) or not isinstance(window, Integral) or int(window) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {window!r}")
    return int(window)


def check_choice(value: object, name: str, options: Iterable[object]) -> object:
    """`value` if it is one of `options`, else a ValueError listing them."""
    opts = tuple(options)
    if value not in opts:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, opts))}; got {value!r}")
    return value


def check_positive_number(value: object, name: str, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0 with `allow_zero`)."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_finite_number(value: object, name: str) -> float:
    """A finite real number (any sign)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


def utc_index(index: pd.Index, name: str) -> pd.Index:
    """Check a datetime index is tz-aware (converted to UTC) and strictly increasing; other indexes pass."""
    if isinstance(index, pd.DatetimeIndex):
        if index.tz is None:
            raise ValueError(f"{name} has a naive DatetimeIndex; expected tz-aware UTC timestamps")
        if str(index.tz) != "UTC":
            index = index.tz_convert("UTC")
        if not (index.is_monotonic_increasing and index.is_unique):
            raise ValueError(f"{name} index must be strictly increasing (sorted, no duplicate timestamps)")
    return index


def _finite_or_raise(values: np.ndarray, name: str, index: pd.Index) -> None:
    ok = np.isfinite(values)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        n_nan = int(np.isnan(values[bad]).sum())
        raise ValueError(
            f"{name} contains {n_nan} NaN and {bad.size - n_nan} infinite values "
            f"(first at {index[bad[0]]!r}); drop or fill them first"
        )


def as_series(x: object, name: str = "x", *, min_len: int = 0, positive: bool = False) -> pd.Series:
    """A float64 Series from a Series / 1-D array / list, checked for finiteness (and > 0 if `positive`)."""
    if isinstance(x, pd.DataFrame):
        raise ValueError(f"{name} must be a Series or 1-D array, got a DataFrame")
    if isinstance(x, pd.Series):
        index = utc_index(x.index, name)
        raw = x.to_numpy()
    else:
        raw = np.asarray(x)
        if raw.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {raw.shape}")
        index = pd.RangeIndex(raw.shape[0])
    try:
        values = raw.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got dtype {raw.dtype}") from None
    _finite_or_raise(values, name, index)
    if min_len:
        check_min(values.shape[0], min_len, f"observations in {name}")
    if positive and values.size and values.min() <= 0:
        raise ValueError(f"{name} must be strictly positive (prices); got min {values.min()!r}")
    out = pd.Series(values, index=index, name=x.name if isinstance(x, pd.Series) else name, copy=False)
    return out


def as_pair(
    y: object, x: object, names: tuple[str, str] = ("y", "x"), *, min_len: int = 0, positive: bool = False
) -> tuple[pd.Series, pd.Series]:
    """Two checked Series of equal length sharing one index (an array takes the other's index)."""
    ys = as_series(y, names[0], positive=positive)
    xs = as_series(x, names[1], positive=positive)
    if len(ys) != len(xs):
        raise ValueError(f"{names[0]} and {names[1]} must have the same length, got {len(ys)} and {len(xs)}")
    y_series, x_series = isinstance(y, pd.Series), isinstance(x, pd.Series)
    if y_series and x_series:
        if not ys.index.equals(xs.index):
            raise ValueError(
                f"{names[0]} and {names[1]} must share the same index; align them first "
                "(e.g. quantlib.pairs.align)"
            )
    elif y_series:
        xs = pd.Series(xs.to_numpy(), index=ys.index, name=xs.name, copy=False)
    elif x_series:
        ys = pd.Series(ys.to_numpy(), index=xs.index, name=ys.name, copy=False)
    if min_len:
        check_min(len(ys), min_len, "observations")
    return ys, xs


def as_frame(frame: object, name: str = "frame", *, min_cols: int = 2, min_len: int = 0,
             positive: bool = False) -> pd.DataFrame:
    """A float64 DataFrame with >= `min_cols` columns, finite values and a checked index."""
    if isinstance(frame, pd.DataFrame):
        index = utc_index(frame.index, name)
        try:
            values = frame.to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must hold numeric columns only") from None
        columns = frame.columns
    else:
        values = np.asarray(frame, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"{name} must be 2-D (observations x series), got shape {values.shape}")
        index, columns = pd.RangeIndex(values.shape[0]), pd.RangeIndex(values.shape[1])
    if values.shape[1] < min_cols:
        raise ValueError(f"{name} needs >= {min_cols} columns, got {values.shape[1]}")
    if not np.isfinite(values).all():
        bad_cols = [str(c) for c, ok in zip(columns, np.isfinite(values).all(axis=0)) if not ok]
        raise ValueError(f"{name} contains NaN/inf in columns {bad_cols}; align or drop rows first")
    if min_len:
        check_min(values.shape[0], min_len, f"observations in {name}")
    if positive and values.size and values.min() <= 0:
        raise ValueError(f"{name} must be strictly positive (prices)")
    return pd.DataFrame(values, index=index, columns=columns)
