"""Figures sent to the browser with typed arrays: the same numbers and times as plotly's own JSON, smaller."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.io as pio

from dashboard import plotjson
from tests.conftest import _decode_typed_arrays


def _figure(n: int = 500) -> dict:
    idx = pd.date_range("2026-12-01 00:00:00.123456", periods=n, freq="1s", tz="UTC").as_unit("us")
    y = np.linspace(91_999.99, 92_123.45, n)
    y[7] = np.nan
    return {"data": [{"type": "scatter", "x": idx, "y": y, "name": "close", "xaxis": "x2", "yaxis": "y2"},
                     {"type": "bar", "x": ["a", "b"], "y": np.array([1, 2]), "marker": {"color": ["#fff", "#000"]}},
                     {"type": "candlestick", "x": idx[:3], "open": y[:3], "high": y[:3] + 1, "low": y[:3] - 1,
                      "close": y[:3]}],
            "layout": {"xaxis2": {"title": {"text": "time"}}, "uirevision": "keep"}}


def test_times_are_exact_utc_milliseconds_on_date_axes():
    fig = _figure()
    out = _decode_typed_arrays(json.loads(plotjson.to_json(fig)))
    us = fig["data"][0]["x"].asi8                                   # microseconds since the epoch
    got = np.array(out["data"][0]["x"]) * 1000
    np.testing.assert_array_equal(np.round(got).astype("int64"), us)  # exact to the microsecond (…00.123456 s)
    assert np.abs(got - us).max() < 0.25
    assert out["layout"]["xaxis2"] == {"title": {"text": "time"}, "type": "date"}   # the trace's own axis
    assert out["layout"]["xaxis"] == {"type": "date"}             # the candlestick's (default) axis
    assert out["layout"]["uirevision"] == "keep"


def test_numbers_round_trip_and_nan_stays_a_gap():
    fig = _figure()
    out = _decode_typed_arrays(json.loads(plotjson.to_json(fig)))
    got = np.array(out["data"][0]["y"], dtype=float)
    np.testing.assert_array_equal(got, fig["data"][0]["y"])       # bit-exact float64, NaN where it was
    assert out["data"][1]["x"] == ["a", "b"] and out["data"][1]["y"] == [1, 2]
    assert out["data"][1]["marker"] == {"color": ["#fff", "#000"]}  # strings and colours are left as they were
    assert out["data"][2]["high"] == list(fig["data"][2]["high"])


def test_same_figure_as_plotly_json_but_much_smaller():
    fig = _figure(20_000)
    typed = plotjson.to_json(fig)
    plain = json.loads(pio.to_json(fig, validate=False))
    out = _decode_typed_arrays(json.loads(typed))
    for a, b in zip(plain["data"], out["data"]):
        for key in ("y", "open", "high", "low", "close"):
            if key in a:
                np.testing.assert_array_equal(np.array(a[key], dtype=float), np.array(b[key], dtype=float))
        if a["type"] != "bar":
            ms = pd.to_datetime(a["x"]).as_unit("us").asi8 / 1000
            np.testing.assert_array_equal(ms, b["x"])
    assert len(typed) < len(pio.to_json(fig, validate=False)) / 2
    assert plotjson.encode(fig) is not fig and isinstance(fig["data"][0]["x"], pd.DatetimeIndex)  # input untouched
