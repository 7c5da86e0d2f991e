"""tickstore.symbol_catalog / queries.symbols: the per-symbol catalogue the writer keeps equals a scan of every tick."""
from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from tickstore import queries, symbol_catalog
from tickstore.connection import write_connection
from tickstore.schema import ensure_schema
from tickstore.writer import TickBuffer, TickWriter

T0 = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp() * 1e6)


def _rows(rng, markets=("spot", "usdm"), n_symbols=120, per=(1, 30)):
    rows = []
    for market in markets:
        for k in range(n_symbols):
            sym = f"S{k:03d}USDT"
            n = int(rng.integers(*per))
            ids = rng.permutation(np.arange(1000, 1000 + n))  # out of id order: last price is by id, not arrival
            for tid in ids:
                rows.append((market, sym, int(tid), T0 + int(tid) * 1000 + int(rng.integers(0, 500)),
                             float(rng.uniform(1, 100)), 1.0, bool(tid % 2), None, "ws"))
    return rows


def _brute(path) -> pd.DataFrame:
    """Independent reference: every tick read into pandas, aggregated there."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        t = con.execute("SELECT market, symbol, trade_id, ts, price FROM ticks").df()
    finally:
        con.close()
    t["ts"] = pd.to_datetime(t["ts"], utc=True)
    last = t.sort_values("trade_id").groupby(["market", "symbol"])["price"].last()
    g = t.groupby(["market", "symbol"]).agg(ticks=("trade_id", "size"), first_ts=("ts", "min"), last_ts=("ts", "max"))
    return g.assign(last_price=last).reset_index().sort_values(["market", "symbol"], ignore_index=True)


def _flush(path, rows, chunks=4):
    writer = TickWriter(path, TickBuffer())
    for part in np.array_split(np.arange(len(rows)), chunks):
        writer.buffer.extend([rows[i] for i in part])
        writer.flush_once()


def _check(path):
    got = queries.symbols(path)
    assert got.attrs["source"] == "catalog"
    ref = _brute(path)
    pd.testing.assert_frame_equal(got.reset_index(drop=True)[list(ref.columns)], ref, check_dtype=False)
    pd.testing.assert_frame_equal(got, queries.symbols_scan(path), check_dtype=False)


def test_catalogue_equals_brute_force_after_flushes_with_duplicates(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "t.duckdb"
    rows = _rows(rng)
    _flush(path, rows)
    _flush(path, [rows[i] for i in rng.choice(len(rows), 500)] + _rows(rng, n_symbols=140, per=(30, 40)))  # repeats
    _check(path)
    assert len(queries.symbols(path)) == 280
    assert set(queries.stored_symbols("usdm", path)["symbol"]) == {f"S{k:03d}USDT" for k in range(140)}


def test_direct_inserts_fall_back_to_the_scan_and_the_next_writer_rebuilds(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "t.duckdb"
    _flush(path, _rows(rng, n_symbols=20))
    with write_connection(path) as con:  # a tool that writes ticks without the writer
        con.execute("""INSERT INTO ticks(market, symbol, trade_id, ts, price, qty)
                       VALUES ('spot', 'NEWUSDT', 1, make_timestamptz($t::BIGINT), 5.0, 1.0)""", {"t": T0})
        assert not symbol_catalog.consistent(con)
    got = queries.symbols(path)
    assert got.attrs["source"] == "scan" and "NEWUSDT" in set(got["symbol"])
    with write_connection(path) as con:
        ensure_schema(con)  # what every writer does first
        assert symbol_catalog.consistent(con)
    _check(path)


def test_a_file_from_before_the_catalogue_is_rebuilt(tmp_path):
    rng = np.random.default_rng(9)
    path = tmp_path / "t.duckdb"
    _flush(path, _rows(rng, n_symbols=30))
    with write_connection(path) as con:
        con.execute("DROP TABLE symbol_catalog")
    assert queries.symbols(path).attrs["source"] == "scan"
    with write_connection(path) as con:
        assert symbol_catalog.ensure_catalog(con) is True
    _check(path)
