"""core/: the single definitions every room imports (timeframes, durations, CSV layouts, symbols, logs, paths)."""
from __future__ import annotations

import ast
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core import binance_csv, durations, logs, paths, symbols, timeframes

ROOT = Path(__file__).resolve().parents[1]


def test_core_imports_only_the_standard_library_and_itself():
    for f in (ROOT / "core").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                assert top in ("__future__", "core") or top in sys.stdlib_module_names, f"{f.name} imports {name}"


def test_timeframes_one_table():
    assert timeframes.SECONDS == {"1s": 1, "5s": 5, "15s": 15, "1m": 60, "5m": 300, "15m": 900, "1h": 3600,
                                  "4h": 14400, "1d": 86400}
    assert set(timeframes.CHOICES) <= set(timeframes.SECONDS)
    assert timeframes.CHOICES == ("1s", "1m", "5m", "15m", "1h")  # DESIGN.md: alert_rules.timeframe
    assert timeframes.seconds("15m") == 900
    for bad in ("2m", "", None, "1M"):
        with pytest.raises(ValueError, match="unknown timeframe .*expected one of 1s, 5s"):
            timeframes.seconds(bad)


def test_every_room_reads_the_same_timeframes():
    import alerts.rules
    import dashboard.settings
    import quantlib.timeframes
    import tickstore.queries

    assert quantlib.timeframes.TIMEFRAMES is timeframes.SECONDS
    assert alerts.rules.TIMEFRAMES is timeframes.CHOICES and dashboard.settings.TIMEFRAMES is timeframes.CHOICES
    assert tickstore.queries.tf_seconds is timeframes.seconds


@pytest.mark.parametrize("text, kwargs, seconds", [
    ("90s", {}, 90.0), ("30m", {}, 1800.0), ("6h", {}, 21600.0), ("7d", {}, 604800.0), (" 1.5 M ", {}, 90.0),
    ("23.5h", {}, 84600.0), ("500ms", {"units": ("ms", "s")}, 0.5), ("20", {"bare_seconds": True}, 20.0),
    ("2w", {"units": ("d", "w"), "whole": True}, 14 * 86400.0),
])
def test_durations(text, kwargs, seconds):
    assert durations.parse_duration(text, **kwargs) == seconds


@pytest.mark.parametrize("text, kwargs", [
    ("", {}), ("7", {}), ("-1d", {}), ("7x", {}), ("seven days", {}), ("1ms", {}), ("2w", {}), (None, {}),
    ("1.5d", {"units": ("d", "w"), "whole": True}), ("7h", {"units": ("d", "w")}), ("s", {"bare_seconds": True}),
])
def test_bad_durations_say_what_is_expected(text, kwargs):
    with pytest.raises(durations.DurationError, match=r"bad duration .*expected .* e\.g\. "):
        durations.parse_duration(text, **kwargs)


def test_symbols():
    assert symbols.is_symbol("BTCUSDT") and symbols.is_symbol("1000PEPEUSDT") and symbols.is_symbol("A" * 30)
    for bad in ("btcusdt", "B", "A" * 31, "BTC-USDT", "", None, "BTCUSDT\n"):
        assert not symbols.is_symbol(bad)
    assert re.fullmatch(symbols.PATTERN, "ETHUSDT")


def test_binance_csv_layouts():
    assert len(binance_csv.TRADE_LAYOUTS[("spot", "trades")]) == 7
    assert len(binance_csv.TRADE_LAYOUTS[("usdm", "trades")]) == 6
    assert len(binance_csv.TRADE_LAYOUTS[("spot", "aggTrades")]) == 8
    assert len(binance_csv.TRADE_LAYOUTS[("usdm", "aggTrades")]) == 7
    assert len(binance_csv.KLINE_COLUMNS) == 12
    for cols in binance_csv.TRADE_LAYOUTS.values():  # every column of every layout has a role
        roles = [binance_csv.HEADER_ROLES[c] for c in cols]
        assert {"id", "price", "qty", "time", "is_buyer_maker"} <= set(roles)


def test_uploads_and_dumps_share_the_layouts():
    from dashboard import uploads
    from history import dumps

    assert uploads.HEADERLESS_LAYOUTS[7] == list(binance_csv.TRADE_LAYOUTS[("spot", "trades")])
    assert uploads.HEADERLESS_LAYOUTS[8] == list(binance_csv.TRADE_LAYOUTS[("spot", "aggTrades")])
    assert dumps.TRADE_LAYOUTS is binance_csv.TRADE_LAYOUTS


def test_default_db_path(monkeypatch):
    monkeypatch.delenv(paths.DB_ENV, raising=False)
    assert paths.default_db_path() == Path("data/ticks.duckdb")
    monkeypatch.setenv(paths.DB_ENV, "/tmp/x.duckdb")
    assert paths.default_db_path() == Path("/tmp/x.duckdb")
    monkeypatch.setenv(paths.DB_ENV, "")
    assert paths.default_db_path() == paths.DEFAULT_DB


def test_log_lines_are_one_line_utc_in_a_fresh_process():
    code = ("import logging; from core.logs import setup_logging; setup_logging('debug'); "
            "logging.getLogger('x.y').debug('hello %s', 1)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"TZ": "Asia/Tokyo", "PATH": "/usr/bin:/bin"})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z DEBUG x\.y: hello 1\n", out.stderr), out.stderr
    import time
    hour = time.strftime("%H", time.gmtime())
    assert out.stderr[11:13] in (hour, f"{(int(hour) - 1) % 24:02d}")  # UTC, not the process's Tokyo time


def test_setup_logging_keeps_existing_handlers():
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        if not before:
            pytest.skip("pytest installs handlers on the root logger")
        logs.setup_logging("WARNING")
        assert root.handlers == before and root.level == logging.WARNING
    finally:
        root.setLevel(level)


def test_symbol_lists():
    assert symbols.parse_symbols(" btcusdt, ETHUSDT ,btcusdt,,") == ["BTCUSDT", "ETHUSDT"]
    with pytest.raises(symbols.SymbolError, match="no symbols given; expected a comma-separated list"):
        symbols.parse_symbols(" , ")
    with pytest.raises(symbols.SymbolError, match=r"bad symbol\(s\) BTC-USDT, X; expected 2-30 letters"):
        symbols.parse_symbols("btc-usdt,ethusdt,x")
