"""AppTest: the sidebar's default selections follow the symbols as they are stored; a user's choice stays.

A page opened during start-up sees only the symbols stored so far. Defaulted selections (Symbols, Pair Y,
Pair X) must take in symbols that arrive later; a selection the user made (widget, bookmark URL, Screener pick)
must not be overridden.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import streamlit as st

from tests.conftest import assert_no_exception, synthetic_pair_ticks
from tickstore.connection import init_db
from tickstore.writer import TickBuffer, TickWriter

END = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)


def _store(path: Path, symbols: set[str], x: str = "BTCUSDT", y: str = "ETHUSDT", seed: int = 7) -> None:
    """Append 1 h of ticks of the pair (x, y), keeping only `symbols`."""
    start_us = int((END - dt.timedelta(hours=1)).timestamp() * 1e6)
    rows = [r for r in synthetic_pair_ticks(start_us, 1.0, 1.0, seed, x_symbol=x, y_symbol=y) if r[1] in symbols]
    buf = TickBuffer()
    buf.extend(rows)
    TickWriter(path, buf).flush_once()


def _new_data_arrived(at) -> None:
    st.cache_data.clear()  # the next refresh interval (in the browser the sidebar watcher reruns the app)
    at.run()
    assert_no_exception(at)


def test_defaults_take_in_symbols_stored_after_the_page_opened(app, tmp_path):
    db = tmp_path / "ticks.duckdb"
    init_db(db)
    _store(db, {"BTCUSDT"})
    at = app(db)
    assert_no_exception(at)
    assert at.multiselect(key="sym").value == ["BTCUSDT"]
    _store(db, {"ETHUSDT"})
    _new_data_arrived(at)
    assert at.multiselect(key="sym").options == ["BTCUSDT", "ETHUSDT"]
    assert at.multiselect(key="sym").value == ["BTCUSDT", "ETHUSDT"]
    assert (at.selectbox(key="y").value, at.selectbox(key="x").value) == ("ETHUSDT", "BTCUSDT")
    assert "sym" not in at.query_params and "y" not in at.query_params  # defaults stay out of the URL
    # on another page too (the sidebar is the entrypoint's)
    at.switch_page("app_pages/pairs.py").run()
    assert_no_exception(at)
    assert at.multiselect(key="sym").value == ["BTCUSDT", "ETHUSDT"]


def test_a_symbol_picked_by_the_user_is_kept_when_more_arrive(app, tmp_path):
    db = tmp_path / "ticks.duckdb"
    init_db(db)
    _store(db, {"BTCUSDT", "ETHUSDT"})
    at = app(db)
    assert at.multiselect(key="sym").value == ["BTCUSDT", "ETHUSDT"]
    at.multiselect(key="sym").set_value(["ETHUSDT"]).run()
    at.selectbox(key="y").set_value("BTCUSDT").run()
    at.selectbox(key="x").set_value("ETHUSDT").run()
    assert_no_exception(at)
    _store(db, {"SOLUSDT", "BNBUSDT"}, x="SOLUSDT", y="BNBUSDT", seed=11)
    _new_data_arrived(at)
    assert "SOLUSDT" in at.multiselect(key="sym").options
    assert at.multiselect(key="sym").value == ["ETHUSDT"]
    assert (at.selectbox(key="y").value, at.selectbox(key="x").value) == ("BTCUSDT", "ETHUSDT")


def test_a_bookmarked_selection_is_the_users_choice(app, tmp_path):
    db = tmp_path / "ticks.duckdb"
    init_db(db)
    _store(db, {"BTCUSDT", "ETHUSDT"})
    at = app(db, query={"sym": "ETHUSDT"})
    assert at.multiselect(key="sym").value == ["ETHUSDT"]
    _store(db, {"SOLUSDT"}, x="SOLUSDT", y="BNBUSDT", seed=11)
    _new_data_arrived(at)
    assert at.multiselect(key="sym").value == ["ETHUSDT"]
    # the pair was not in the URL: it still follows the data (X stays BTC, the usual hedge leg)
    assert (at.selectbox(key="y").value, at.selectbox(key="x").value) == ("ETHUSDT", "BTCUSDT")


def test_defaults_do_not_reshuffle_without_new_symbols(app, tmp_path):
    """With more symbols than the default shows, a redraw for another reason (a control change) keeps the
    defaulted selection even if the tick counts now rank the symbols differently."""
    db = tmp_path / "ticks.duckdb"
    init_db(db)
    _store(db, {"BTCUSDT", "ETHUSDT"})
    _store(db, {"SOLUSDT", "BNBUSDT"}, x="SOLUSDT", y="BNBUSDT", seed=11)
    _store(db, {"XRPUSDT"}, x="XRPUSDT", y="DOGEUSDT", seed=12)
    at = app(db)
    first = at.multiselect(key="sym").value
    assert len(first) == 4
    left_out = next(s for s in at.multiselect(key="sym").options if s not in first)
    for _ in range(3):  # the left-out symbol now has the most ticks
        _store(db, {left_out}, x=left_out, y="NOPE", seed=13 + _)
    st.cache_data.clear()
    at.selectbox(key="lb").set_value("6h").run()
    assert_no_exception(at)
    assert at.multiselect(key="sym").value == first
