"""Hostile input on the history path: archive paths cannot escape the archive directory; dump imports refuse rows
that cannot be real trades (out-of-range times and ids, rows from another day than the file's name) and files
that change between their check and their import."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pytest

from history import dumps as dumps_mod
from history.dumps import DumpError, import_dumps
from tests.conftest import make_tick_db
from tests.test_history_import import make_rows, snapshot, stored, write_dump
from tickstore.archive import archive_ticks
from tickstore.connection import init_db, write_connection

END = dt.datetime(2024, 1, 5, 12, 0, tzinfo=dt.UTC)
BAD_SYMBOL = "../../../../elsewhere/x"


def _count(db: Path, sql: str, params=None) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchone()[0]


def test_archive_never_writes_outside_its_directory(tmp_path):
    """A symbol that is a path (stored by an older ingestor that accepted any symbol) stays in the hot file."""
    data = tmp_path / "data"
    data.mkdir()
    db = data / "ticks.duckdb"
    make_tick_db(db, hours=48, rate_per_s=0.02, end=END, seed=3)
    with write_connection(db) as con:
        con.execute("""INSERT INTO ticks SELECT market, $s, trade_id, ts, price, qty, is_buyer_maker, recv_ts, source
                       FROM ticks WHERE symbol = 'BTCUSDT' AND ts < '2024-01-04' LIMIT 50""", {"s": BAD_SYMBOL})
    res = archive_ticks(db, dt.timedelta(days=1), archive_dir=data / "archive", now=END)
    outside = [p for p in tmp_path.rglob("*.parquet") if not p.is_relative_to(data / "archive")]
    assert outside == [], outside
    assert not (data / "elsewhere").exists()
    assert res.rows_archived > 0 and res.skipped and "not letters and digits" in res.summary()
    assert _count(db, "SELECT count(*) FROM ticks WHERE symbol = ?", [BAD_SYMBOL]) == 50  # kept, not lost


# ------------------------------------------------------------------------------------------- dump plausibility

def _import_refused(tmp_path, rows, match, period="2024-01-01"):
    db = tmp_path / "t.duckdb"
    init_db(db)
    before = snapshot(db)
    path = write_dump(tmp_path / "dl", rows, period=period)
    with pytest.raises(DumpError, match=match):
        import_dumps([path], db)
    assert snapshot(db) == before


def test_dump_row_with_an_absurd_id_is_refused(tmp_path):
    """One id of 9e18 made the next ingestor start resume after it: every live trade a duplicate, no backfill."""
    rows = make_rows(500)
    rows.loc[250, "trade_id"] = 9 * 10**18
    _import_refused(tmp_path, rows, r"line 251: trade ids must be below")


def test_dump_ids_that_are_not_a_consecutive_run_are_refused(tmp_path):
    rows = make_rows(500)
    rows.loc[499, "trade_id"] = 5 * 10**12  # plausible on its own, not in a file of 500 consecutive ids
    _import_refused(tmp_path, rows, r"ids run from 5,000,000 to 5,000,000,000,000 for only 500 rows")


def test_dump_row_dated_2200_is_refused(tmp_path):
    """One row dated 2200 anchored every chart of the market in the future (empty charts, no message)."""
    rows = make_rows(500)
    rows.loc[100, "ts_us"] = int(dt.datetime(2200, 1, 1, tzinfo=dt.UTC).timestamp() * 1e6)
    _import_refused(tmp_path, rows, r"line 101: time 2200-01-01T00:00:00Z is outside 2024-01-01")


def test_dump_row_from_another_day_than_its_file_name_is_refused(tmp_path):
    rows = make_rows(500)
    rows.loc[300, "ts_us"] += 86_400 * 10**6
    _import_refused(tmp_path, rows, r"line 301: time 2024-01-02T.* is outside 2024-01-01")


def test_dump_named_for_a_date_that_cannot_hold_trades_is_refused(tmp_path):
    for period, match in (("2024-02-30", "not a date"), ("2001-01-01", "outside 2009")):
        with pytest.raises(DumpError, match=match):
            import_dumps([write_dump(tmp_path / period, make_rows(10), period=period)], tmp_path / "t.duckdb")


def test_monthly_dump_takes_rows_of_its_whole_month(tmp_path):
    rows = make_rows(300)
    rows.loc[200:, "ts_us"] += 20 * 86_400 * 10**6  # later in January
    db = tmp_path / "t.duckdb"
    (res,) = import_dumps([write_dump(tmp_path / "dl", rows, period="2024-01")], db)
    assert res.inserted == 300


def test_file_changed_between_check_and_write_imports_exactly_what_was_checked(tmp_path, monkeypatch):
    """The original is rewritten (with a bad row two thirds in) right after its check pass: before, the write pass
    read the new bytes and committed the first batches before failing; now it reads the checked copy."""
    rows = make_rows(3000)
    path = write_dump(tmp_path / "dl", rows)
    changed = rows.copy()
    changed["price"] += 1.0
    changed.loc[2000, "trade_id"] = -1
    real_check = dumps_mod.check_dump

    def check_then_change(dump, progress=None):
        res = real_check(dump, progress)
        write_dump(tmp_path / "dl", changed)  # same name, new content
        return res

    monkeypatch.setattr(dumps_mod, "check_dump", check_then_change)
    db = tmp_path / "t.duckdb"
    (res,) = import_dumps([path], db, batch_rows=500)
    assert res.inserted == 3000
    got = stored(db)
    assert got["trade_id"].tolist() == rows["trade_id"].tolist()
    assert got["price"].tolist() == rows["price"].tolist()


# ------------------------------------------------------------------------------- hostile files: bombs, encodings

def test_zip_bomb_is_refused_from_its_directory_without_decompressing_it(tmp_path):
    import zipfile

    from history.dumps import inspect_dump
    from tests.test_history_import import csv_text

    path = tmp_path / "BTCUSDT-trades-2024-01-02.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("BTCUSDT-trades-2024-01-02.csv", "w", force_zip64=True) as fh:
            fh.write(csv_text(make_rows(3), "spot", "trades", False, "ms").encode())
            for _ in range(16):  # 16 MiB of zeros deflate ~1000x: over the 1 MiB floor and the 100x ratio
                fh.write(b"\0" * (1 << 20))
    with pytest.raises(DumpError, match=r"would expand [\d,]+x .*zip bomb"):
        inspect_dump(path)


def test_encoding_error_names_its_own_line(tmp_path):
    from history.dumps import check_dump, inspect_dump
    from tests.test_history_import import csv_text

    lines = csv_text(make_rows(40), "spot", "trades", False, "ms").encode().split(b"\n")
    lines[10] = lines[10].replace(b",4", b",\xe94", 1)  # a Latin-1 byte in the price of line 11
    path = tmp_path / "BTCUSDT-trades-2024-01-01.csv"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DumpError, match=r"malformed CSV at line 11 "):
        check_dump(inspect_dump(path))


@pytest.mark.parametrize("text, fragment", [
    ("time,price,qty,symbol\n2024-05-01T00:00:00Z,1,1,BTCUSDT\n2024-05-01T00:00:01Z,1,1,../../etc/x\n",
     "column `symbol`: '../../etc/x' on line 3 is not a symbol"),
    ("time,price,qty,symbol\n2024-05-01T00:00:00Z,1,1,<script>\n", "on line 2 is not a symbol"),
])
def test_uploaded_symbol_column_is_validated_like_any_symbol(text, fragment):
    from dashboard.uploads import UploadError, parse_csv

    with pytest.raises(UploadError, match=re.escape(fragment)):
        parse_csv("ticks.csv", text.encode())
