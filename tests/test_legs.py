"""core.legs: parsing and naming pair legs of several markets; the scanner's --market spot,usdm on them."""
from __future__ import annotations

import csv
import datetime as dt

import pandas as pd
import pytest

import scanner
from core.legs import Leg, LegError, labels, parse_leg, parse_legs, short
from quantlib.screen import screen_pairs
from tests.basis_db import make_basis_db
from tickstore import queries


def test_parse_and_name_legs():
    assert parse_leg("usdm:btcusdt", "spot") == Leg("usdm", "BTCUSDT")
    assert parse_leg(" ETHUSDT ", "spot") == Leg("spot", "ETHUSDT")
    assert parse_leg("USDM:ethusdt", "spot").key == "usdm:ETHUSDT"
    assert parse_legs("btcusdt, usdm:btcusdt, btcusdt", "spot") == [Leg("spot", "BTCUSDT"), Leg("usdm", "BTCUSDT")]
    assert labels([Leg("spot", "ETHUSDT"), Leg("spot", "BTCUSDT")]) == ["ETHUSDT", "BTCUSDT"]
    assert labels([Leg("usdm", "BTCUSDT"), Leg("spot", "BTCUSDT")]) == ["usdm:BTCUSDT", "spot:BTCUSDT"]
    assert short(Leg("spot", "BTCUSDT"), "spot") == "BTCUSDT" and short(Leg("usdm", "BTCUSDT"), "spot") == "usdm:BTCUSDT"
    for bad, fragment in (("", "no leg given"), ("usdm:", "is not a leg"), ("1x:BTCUSDT", "is not a market name"),
                          ("spot:BTC-USDT", "is not a leg")):
        with pytest.raises(LegError, match=fragment):
            parse_leg(bad, "spot")
    with pytest.raises(LegError, match="bad leg"):
        parse_legs("btcusdt,???", "spot")


END = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def two_markets(tmp_path_factory):
    return make_basis_db(tmp_path_factory.mktemp("scan2") / "b.duckdb", END, marks=False).path


def test_scanner_screens_the_union_of_two_markets(two_markets, tmp_path, capsys):
    out = tmp_path / "pairs.csv"
    code = scanner.main(["--db", str(two_markets), "--market", "spot,usdm", "--lookback", "6h", "--out", str(out),
                         "--top", "3"])
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert {frozenset((r["y"], r["x"])) for r in rows} >= {frozenset(("spot:BTCUSDT", "usdm:BTCUSDT"))}
    assert len(rows) == 6 and {r["market"] for r in rows} == {"spot,usdm"}
    closes = pd.concat([queries.closes_wide(m, None, "1m", dt.timedelta(hours=6), path=two_markets)
                        .rename(columns=lambda c, m=m: f"{m}:{c}") for m in ("spot", "usdm")], axis=1)
    ref = screen_pairs(closes, fdr=0.05).pairs.set_index(["y", "x"])
    for r in rows:
        assert float(r["eg_pvalue"]) == pytest.approx(ref.loc[(r["y"], r["x"]), "eg_pvalue"], rel=1e-9)
    assert "spot,usdm 1m closes" in capsys.readouterr().out


def test_scanner_legs_and_bad_markets(two_markets, tmp_path, caplog):
    out = tmp_path / "legs.csv"
    assert scanner.main(["--db", str(two_markets), "--market", "spot,usdm", "--symbols", "btcusdt,usdm:ethusdt",
                         "--lookback", "6h", "--out", str(out), "--top", "0"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert {r["y"] for r in rows} | {r["x"] for r in rows} == {"spot:BTCUSDT", "usdm:BTCUSDT", "usdm:ETHUSDT"}
    for args, fragment in ((["--market", "spot,coinm"], "unknown market 'coinm'"),
                           (["--market", "spot,usdm", "--symbols", "coinm:btcusdt,btcusdt"],
                            "is of market coinm, which --market spot,usdm does not include"),
                           (["--market", "spot,usdm", "--symbols", "solusdt,btcusdt"], "unknown symbol(s) SOLUSDT")):
        caplog.clear()
        assert scanner.main(["--db", str(two_markets), *args]) == 2
        assert fragment in caplog.text, caplog.text
