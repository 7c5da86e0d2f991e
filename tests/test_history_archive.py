"""Parquet archive (tickstore.archive, `ingestor.py archive`): exact round trip, reads spanning hot + archive,
hive layout readable by pyarrow.dataset, crash/rerun safety, and archiving while an ingestor writes and an app reads.

Reference: a copy of the same tick file that was never archived; every comparison is exact.
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from history.dumps import import_dumps
from history.cli import main as history_main
from tests.conftest import make_tick_db, synthetic_pair_ticks
from tests.test_history_import import write_dump
from tickstore import archive as archive_mod
from tickstore import queries
from tickstore.archive import ArchiveError, archive_cutoff, archived_summary, archive_ticks, default_archive_dir, parse_age
from tickstore.connection import write_connection
from tickstore.state import claim_file
from tickstore.writer import TickBuffer, TickWriter, insert_batch, rows_to_arrow

REPO = Path(__file__).resolve().parents[1]
END = dt.datetime(2024, 1, 5, 12, 0, tzinfo=dt.UTC)
NOW = END
AGE = dt.timedelta(days=1)
CUTOFF = dt.datetime(2024, 1, 4, tzinfo=dt.UTC)
EPOCH = pd.Timestamp(0, tz="UTC")
COLS = "market, symbol, trade_id, ts, price, qty, is_buyer_maker, recv_ts, source"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """4 days of spot BTCUSDT/ETHUSDT and usdm BTCUSDT/SOLUSDT ticks ending 2024-01-05 12:00Z."""
    path = tmp_path_factory.mktemp("archive_tpl") / "ticks.duckdb"
    make_tick_db(path, hours=96, rate_per_s=0.05, end=END, seed=21)
    start_us = int((END - dt.timedelta(hours=96)).timestamp() * 1e6)
    buf = TickBuffer()
    buf.extend(synthetic_pair_ticks(start_us, 96, 0.03, seed=22, market="usdm", y_symbol="SOLUSDT", y_price=100.0))
    TickWriter(path, buf).flush_once()
    return path


@pytest.fixture
def db(template, tmp_path) -> Path:
    path = tmp_path / "data" / "ticks.duckdb"
    path.parent.mkdir()
    shutil.copy(template, path)
    return path


@pytest.fixture
def ref(template, tmp_path) -> Path:
    path = tmp_path / "ref" / "ticks.duckdb"
    path.parent.mkdir()
    shutil.copy(template, path)
    return path


def rows(db: Path, sql: str = f"SELECT {COLS} FROM ticks", params: dict | None = None) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        df = con.execute(sql, params or {}).df()
    return df.sort_values(["market", "symbol", "trade_id"]).reset_index(drop=True)


def archived_rows(root: Path) -> pd.DataFrame:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        df = con.execute(f"SELECT {COLS} FROM read_parquet($g, hive_partitioning = true, "
                         "hive_types = {'market': VARCHAR, 'symbol': VARCHAR, 'date': DATE})",
                         {"g": str(root / "market=*/symbol=*/date=*/*.parquet")}).df()
    return df.sort_values(["market", "symbol", "trade_id"]).reset_index(drop=True)


def test_age_and_cutoff():
    assert parse_age("7d") == dt.timedelta(days=7) and parse_age("2w") == dt.timedelta(days=14)
    for bad in ("7", "7h", "-1d", "seven days", ""):
        with pytest.raises(ArchiveError, match="expected days or weeks"):
            parse_age(bad)
    assert archive_cutoff(dt.datetime(2024, 1, 8, 13, 5, tzinfo=dt.UTC), dt.timedelta(days=7)) == \
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@pytest.mark.slow
def test_round_trip_exact_counts(db, ref):
    res = archive_ticks(db, AGE, now=NOW)
    before = rows(ref)
    old = before[before["ts"] < CUTOFF]
    assert res.cutoff == CUTOFF and res.archive_dir == db.parent / "archive"
    assert res.rows_archived == len(old) > 0
    assert len(res.partitions) == res.files_written == 12          # 2 markets x 2 symbols x 3 days

    hot = rows(db)
    assert hot["ts"].min() >= CUTOFF and len(hot) == len(before) - len(old)
    arch = archived_rows(res.archive_dir)
    pd.testing.assert_frame_equal(arch, old.reset_index(drop=True))
    both = pd.concat([hot, arch]).sort_values(["market", "symbol", "trade_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(both, before)

    with duckdb.connect(str(db), read_only=True) as con:
        listed = con.execute("SELECT market, symbol, day, rows FROM archive_files ORDER BY ALL").fetchall()
    per_day = old.assign(day=old["ts"].dt.date).groupby(["market", "symbol", "day"]).size()
    assert listed == [(m, s, d, n) for (m, s, d), n in per_day.items()]
    for p in res.partitions:   # each file holds exactly its partition's rows
        assert pq.ParquetFile(p.file).metadata.num_rows == p.hot_rows == p.written_rows
    with duckdb.connect(str(db), read_only=True) as con:
        summary = archived_summary(con)
    per_symbol = old.groupby(["market", "symbol"]).agg(n=("trade_id", "size"), a=("ts", "min"), b=("ts", "max"))
    assert [(m, s, n, a, b) for m, s, n, a, b, _files in summary] == \
        [(m, s, r.n, r.a.to_pydatetime(), r.b.to_pydatetime()) for (m, s), r in per_symbol.iterrows()]


@pytest.mark.slow
def test_queries_span_hot_and_archive(db, ref):
    archive_ticks(db, AGE, now=NOW)
    start, mid = END - dt.timedelta(days=4), CUTOFF - dt.timedelta(hours=5)
    for market, syms in (("spot", ["BTCUSDT", "ETHUSDT"]), ("usdm", ["BTCUSDT", "SOLUSDT"])):
        for tf, t0, t1 in (("1m", start, None), ("1h", start, END), ("5m", mid, CUTOFF + dt.timedelta(hours=3))):
            pd.testing.assert_frame_equal(queries.bars(market, syms, tf, t0, t1, path=db),
                                          queries.bars(market, syms, tf, t0, t1, path=ref))
        pd.testing.assert_frame_equal(queries.ticks(market, syms[1], mid, CUTOFF + dt.timedelta(hours=1), path=db),
                                      queries.ticks(market, syms[1], mid, CUTOFF + dt.timedelta(hours=1), path=ref))
    pd.testing.assert_frame_equal(queries.symbols(path=db), queries.symbols(path=ref))
    pd.testing.assert_frame_equal(queries.latest(window=dt.timedelta(days=3), path=db),
                                  queries.latest(window=dt.timedelta(days=3), path=ref))
    assert queries.ticks("spot", "BTCUSDT", start, CUTOFF, path=db)["trade_id"].is_unique


@pytest.mark.slow  # > 4 s on a loaded 2-core host
def test_layout_read_by_pyarrow_dataset(db, ref):
    res = archive_ticks(db, AGE, now=NOW)
    dataset = ds.dataset(res.archive_dir, format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert set(table.column_names) == {"trade_id", "ts", "price", "qty", "is_buyer_maker", "recv_ts", "source",
                                       "market", "symbol", "date"}
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    df = table.to_pandas()
    assert (pd.to_datetime(df["date"]).dt.date == df["ts"].dt.tz_convert("UTC").dt.date).all()
    old = rows(ref)
    old = old[old["ts"] < CUTOFF].reset_index(drop=True)
    got = df[COLS.split(", ")].sort_values(["market", "symbol", "trade_id"]).reset_index(drop=True)
    got["ts"] = got["ts"].astype(old["ts"].dtype)
    got["recv_ts"] = got["recv_ts"].astype(old["recv_ts"].dtype)
    pd.testing.assert_frame_equal(got, old, check_dtype=False, check_categorical=False)
    # the typed partitioning of docs/history.md: filter on the date partition (files pruned by path)
    part = ds.partitioning(pa.schema([("market", pa.string()), ("symbol", pa.string()), ("date", pa.date32())]),
                           flavor="hive")
    sub = ds.dataset(res.archive_dir, format="parquet", partitioning=part).to_table(
        filter=(ds.field("market") == "usdm") & (ds.field("symbol") == "SOLUSDT") & (ds.field("date") >= dt.date(2024, 1, 2)))
    want = (old["market"] == "usdm") & (old["symbol"] == "SOLUSDT") & (old["ts"] >= pd.Timestamp("2024-01-02", tz="UTC"))
    assert sub.num_rows == int(want.sum()) > 0
    frame = pd.read_parquet(res.archive_dir, partitioning=part, filters=[("symbol", "=", "ETHUSDT")])
    assert len(frame) == int((old["symbol"] == "ETHUSDT").sum())
    meta = pq.ParquetFile(res.partitions[0].file).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


@pytest.mark.slow  # > 4 s on a loaded 2-core host
def test_rerun_moves_nothing_and_late_imports_are_deduped(db, ref, tmp_path):
    first = archive_ticks(db, AGE, now=NOW)
    assert archive_ticks(db, AGE, now=NOW).partitions == ()

    # a dump for an archived day: 100 ids already archived + 40 new ones
    day = rows(ref, f"SELECT {COLS} FROM ticks WHERE market = 'spot' AND symbol = 'BTCUSDT' "
                    "AND ts >= '2024-01-02' AND ts < '2024-01-03'")
    known = day.iloc[:100]
    after = int(rows(ref, "SELECT max(trade_id) AS trade_id, 'spot' AS market, 'BTCUSDT' AS symbol FROM ticks "
                          "WHERE symbol = 'BTCUSDT'")["trade_id"].iloc[0]) + 1  # ids nothing stored has yet
    new = pd.DataFrame({"trade_id": range(after, after + 40),
                        "ts_us": [int(pd.Timestamp("2024-01-02T10:00:00Z").value // 1000) + i * 1000 for i in range(40)],
                        "price": 43_000.5, "qty": 0.25, "is_buyer_maker": True})
    dump_rows = pd.concat([pd.DataFrame({"trade_id": known["trade_id"], "ts_us": (known["ts"] - EPOCH) // pd.Timedelta(microseconds=1),
                                         "price": known["price"], "qty": known["qty"],
                                         "is_buyer_maker": known["is_buyer_maker"]}), new])
    path = write_dump(tmp_path / "dl", dump_rows, period="2024-01-02")
    [res] = import_dumps([path], db)
    assert (res.rows, res.inserted, res.duplicates) == (140, 40, 100)

    second = archive_ticks(db, AGE, now=NOW)
    assert [(p.market, p.symbol, p.day, p.hot_rows) for p in second.partitions] == \
        [("spot", "BTCUSDT", dt.date(2024, 1, 2), 40)]
    part_dir = first.archive_dir / "market=spot" / "symbol=BTCUSDT" / "date=2024-01-02"
    assert len(list(part_dir.glob("*.parquet"))) == 2
    everything = queries.ticks("spot", "BTCUSDT", END - dt.timedelta(days=5), END, path=db)
    assert everything["trade_id"].is_unique
    assert len(everything) == len(queries.ticks("spot", "BTCUSDT", END - dt.timedelta(days=5), END, path=ref)) + 40


@pytest.mark.slow
def test_failed_partition_changes_nothing(db, ref, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(archive_mod, "_event", boom)     # fails after write + verify + delete, before commit
    with pytest.raises(RuntimeError, match="disk on fire"):
        archive_ticks(db, AGE, now=NOW)
    pd.testing.assert_frame_equal(rows(db), rows(ref))
    root = default_archive_dir(db)
    assert not list(root.rglob("*.parquet")) and not list(root.rglob("*.tmp"))
    monkeypatch.undo()
    res = archive_ticks(db, AGE, now=NOW)
    assert res.rows_archived == int((rows(ref)["ts"] < CUTOFF).sum())


@pytest.mark.slow
def test_leftovers_of_a_crashed_run_are_cleaned(db, ref):
    root = default_archive_dir(db)
    archive_ticks(db, dt.timedelta(days=3), now=NOW)              # claim the directory, archive 2024-01-01
    # a crash after the rename and before the commit leaves an unregistered file whose rows are still hot
    pdir = root / "market=usdm" / "symbol=SOLUSDT" / "date=2024-01-02"
    pdir.mkdir(parents=True)
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        t = con.sql("""SELECT trade_id, ts, price, qty, is_buyer_maker, recv_ts, source FROM ticks
                       WHERE market = 'usdm' AND symbol = 'SOLUSDT' AND ts >= '2024-01-02' AND ts < '2024-01-03'
                       """).to_arrow_table()
    pq.write_table(t, pdir / "part-crashed.parquet")
    (pdir / ".part-half-written.parquet.tmp").write_bytes(b"PAR1 partial")
    # readers only see registered files: no duplicates even before the next archive run cleans up
    day2 = queries.ticks("usdm", "SOLUSDT", dt.datetime(2024, 1, 2, tzinfo=dt.UTC), dt.datetime(2024, 1, 3, tzinfo=dt.UTC),
                         path=db)
    assert len(day2) == t.num_rows and day2["trade_id"].is_unique
    res = archive_ticks(db, AGE, now=NOW)
    assert res.orphans_removed == 1
    assert not (pdir / "part-crashed.parquet").exists() and not (pdir / ".part-half-written.parquet.tmp").exists()
    pd.testing.assert_frame_equal(
        pd.concat([rows(db), archived_rows(root)]).sort_values(["market", "symbol", "trade_id"]).reset_index(drop=True),
        rows(ref))


@pytest.mark.slow
def test_archives_never_mix(db, tmp_path, capsys):
    demo = db.parent / "demo.duckdb"
    shutil.copy(db, demo)
    assert default_archive_dir(db) == db.parent / "archive"
    assert default_archive_dir(demo) == db.parent / "archive-demo"
    archive_ticks(db, AGE, now=NOW)
    with pytest.raises(ArchiveError, match="holds the archive of .*ticks.duckdb"):
        archive_ticks(demo, AGE, now=NOW, archive_dir=db.parent / "archive")
    with pytest.raises(ArchiveError, match="already archives into"):
        archive_ticks(db, AGE, now=NOW, archive_dir=tmp_path / "elsewhere")
    stranger = tmp_path / "photos"
    stranger.mkdir()
    (stranger / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(ArchiveError, match="not empty and is not a tickdesk archive"):
        archive_ticks(demo, AGE, now=NOW, archive_dir=stranger)
    rc = history_main(["archive", "--older-than", "1d", "--db", str(demo), "--archive-dir", str(db.parent / "archive")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "holds the archive of" in err[0]
    res = archive_ticks(demo, AGE, now=NOW)                     # its own default directory works
    assert res.archive_dir == db.parent / "archive-demo" and res.rows_archived > 0


def test_demo_file_is_not_archived(db):
    with write_connection(db) as con:
        claim_file(con, "demo")
    with pytest.raises(ArchiveError, match="simulated demo ticks"):
        archive_ticks(db, AGE, now=NOW)
    assert not default_archive_dir(db).exists()


@pytest.mark.slow
def test_cli_archive(db, ref, capsys):
    assert history_main(["archive", "--older-than", "7d", "--db", str(db)]) == 0   # 2024 data: all of it is old
    assert "archived" in capsys.readouterr().out
    assert rows(db).empty
    pd.testing.assert_frame_equal(archived_rows(db.parent / "archive"), rows(ref))
    assert history_main(["archive", "--older-than", "7x", "--db", str(db)]) == 2
    assert history_main(["archive", "--older-than", "7d", "--db", str(db.parent / "nope.duckdb")]) == 2
    assert history_main(["archive", "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)


@pytest.mark.slow
def test_missing_archive_directory_falls_back_to_hot(db, caplog):
    res = archive_ticks(db, AGE, now=NOW)
    res.archive_dir.rename(db.parent / "moved")
    with caplog.at_level("WARNING"):
        syms = queries.symbols(path=db)
    assert syms["first_ts"].min() >= CUTOFF
    assert "without the archive" in caplog.text


READER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tickstore.connection import StoreBusy, read_connection
    db, stop, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    seen = []
    while not stop.exists():
        try:
            with read_connection(db, budget_s=10) as con:
                seen.append(con.execute(
                    "SELECT count(*), count(DISTINCT (market, symbol, trade_id)) FROM ticks_all WHERE ts < '2024-02-01'"
                ).fetchall()[0])
        except StoreBusy:
            pass
        time.sleep(0.01)
    out.write_text(repr(sorted(set(seen))) + " " + str(len(seen)))
""")


@pytest.mark.slow
def test_archive_while_ingesting_and_reading(db, ref, tmp_path):
    """Three processes: this one writes live ticks every 20 ms, a reader counts the old ticks through ticks_all
    in a loop, and `python ingestor.py archive` moves them. Readers always see every old tick exactly once."""
    for path in (db, ref):                  # spot only: 10 partitions are plenty here and keep the test short
        with write_connection(path) as con:
            con.execute("DELETE FROM ticks WHERE market = 'usdm'")
    n_old = len(rows(ref))
    stop, out = tmp_path / "stop", tmp_path / "seen"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(db), str(stop), str(out)], cwd=REPO)
    buf = TickBuffer()
    writer = TickWriter(db, buf, flush_ms=20, lock_budget_s=2.0).start()
    produced = 0
    halt = threading.Event()

    def produce() -> None:
        nonlocal produced
        tid = 50_000_000
        while not halt.is_set():
            now_us = int(time.time() * 1e6)
            buf.extend([("spot", "BTCUSDT", tid + i, now_us + i, 42_000.0, 0.01, False, now_us, "ws") for i in range(5)])
            tid += 5
            produced += 5
            time.sleep(0.005)

    feeder = threading.Thread(target=produce)
    feeder.start()
    try:
        time.sleep(0.3)
        proc = subprocess.run([sys.executable, "ingestor.py", "archive", "--older-than", "7d", "--db", str(db)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        time.sleep(0.3)
    finally:
        halt.set()
        feeder.join()
        unwritten = writer.stop()
        stop.write_text("")
        reader.wait(timeout=60)
    seen, n_reads = out.read_text().rsplit(" ", 1)
    assert seen == repr([(n_old, n_old)]) and int(n_reads) > 0
    hot = rows(db)
    missing = sorted(set(range(50_000_000, 50_000_000 + produced)) - set(hot["trade_id"]))
    assert not unwritten and not missing, (f"{unwritten} ticks not written at stop; {len(missing)} of {produced} "
                                           f"missing: {missing[:3]}…{missing[-3:]}; {writer.stats.flushes} flushes, "
                                           f"{writer.stats.failures} failed")
    assert len(hot) == produced and (hot["source"] == "ws").all() and hot["trade_id"].min() >= 50_000_000
    pd.testing.assert_frame_equal(archived_rows(db.parent / "archive"), rows(ref))


@pytest.mark.slow
def test_partition_that_changes_while_archiving_is_retried(db, ref, monkeypatch):
    """A row arriving for the partition between snapshot and delete (e.g. a concurrent import) is not lost."""
    real = archive_mod._write_parquet
    calls = []

    def write_and_meanwhile_import(spool, path):
        if not calls:       # the first partition (spot BTCUSDT 2024-01-01) gains a tick while its file is written
            assert path.parent.parts[-3:] == ("market=spot", "symbol=BTCUSDT", "date=2024-01-01")
            t = int(dt.datetime(2024, 1, 1, 3, tzinfo=dt.UTC).timestamp() * 1e6)
            with write_connection(db) as con:
                insert_batch(con, rows_to_arrow([("spot", "BTCUSDT", 77, t, 3000.0, 1.0, True, None, "import")]))
        calls.append(path)
        return real(spool, path)

    monkeypatch.setattr(archive_mod, "_write_parquet", write_and_meanwhile_import)
    res = archive_ticks(db, AGE, now=NOW)
    assert len(calls) == res.files_written + 1                  # the changed partition was written twice
    assert res.rows_archived == int((rows(ref)["ts"] < CUTOFF).sum()) + 1
    arch = archived_rows(res.archive_dir)
    assert 77 in set(arch.loc[(arch["market"] == "spot") & (arch["symbol"] == "BTCUSDT"), "trade_id"]) and arch["trade_id"].groupby(
        [arch["market"], arch["symbol"]]).apply(lambda s: s.is_unique).all()
    assert not list(res.archive_dir.rglob("*.tmp"))
