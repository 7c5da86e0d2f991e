"""The app's one write path (tickstore.appwrite) inside a process that keeps reading the same file.

DuckDB refuses, inside one process, a read-write open of a file that has a read-only connection open (and the
reverse) with "different configuration". These tests hold real connections open in other threads and check that
the write waits for them instead of failing, is not starved by a stream of reads, and fails with typed errors.
"""
from __future__ import annotations

import threading
import time

import duckdb
import pytest

from alerts.rules import RuleStore, validate_rule
from tickstore import alerts_sql
from tickstore.appwrite import StoreBusy, StoreError, StoreMissing, app_write
from tickstore.connection import init_db, read_connection, write_connection

RULE = {"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 1}


@pytest.fixture
def db(tmp_path):
    return init_db(tmp_path / "t.duckdb")


def test_duckdb_refuses_a_second_configuration_in_one_process(db):
    """The DuckDB behaviour the gate exists for (if a DuckDB upgrade lifts it, the gate can go)."""
    ro = duckdb.connect(str(db), read_only=True)
    try:
        with pytest.raises(duckdb.ConnectionException, match="different configuration"):
            duckdb.connect(str(db), read_only=False)
    finally:
        ro.close()
    duckdb.connect(str(db), read_only=False).close()  # fine once the reader closed


def test_write_waits_for_an_open_read_of_another_thread(db):
    opened, release = threading.Event(), threading.Event()

    def reader():
        with read_connection(db) as con:
            con.execute("SELECT count(*) FROM ticks").fetchall()
            opened.set()
            release.wait(5)

    t = threading.Thread(target=reader)
    t.start()
    assert opened.wait(5)
    done = threading.Event()
    saved = []
    w = threading.Thread(target=lambda: (saved.append(RuleStore(db).create(RULE)), done.set()))
    w.start()
    assert not done.wait(0.3)          # still waiting for the reader, not failed
    release.set()
    assert done.wait(10)
    t.join()
    w.join()
    assert [r.id for r in RuleStore(db).list()] == [saved[0].id]


def test_read_waits_for_an_open_app_write_of_another_thread(db):
    holding, release = threading.Event(), threading.Event()

    def writer():
        with app_write(db, atomic=True) as con:
            alerts_sql.insert_rule(con, validate_rule({**RULE, "symbol": "ETHUSDT"}).to_row())
            holding.set()
            release.wait(5)

    t = threading.Thread(target=writer)
    t.start()
    assert holding.wait(5)
    threading.Timer(0.3, release.set).start()
    rules = RuleStore(db).list()          # waits out the write (budget 2 s), then sees its row
    t.join()
    assert [r.symbol for r in rules] == ["ETHUSDT"]


def test_write_is_not_starved_by_a_stream_of_reads(db):
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader():
        while not stop.is_set():
            try:
                with read_connection(db) as con:
                    con.execute("SELECT count(*) FROM ticks").fetchall()
                    time.sleep(0.02)      # overlapping reads: the file always has a reader open
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        created = [RuleStore(db, lock_budget_s=5.0).create(RULE) for _ in range(10)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert len(RuleStore(db).list()) == len(created) == 10


def test_busy_and_missing_are_typed(db, tmp_path):
    opened, release = threading.Event(), threading.Event()

    def reader():
        with read_connection(db):
            opened.set()
            release.wait(5)

    t = threading.Thread(target=reader)
    t.start()
    assert opened.wait(5)
    try:
        with pytest.raises(StoreBusy):
            RuleStore(db, lock_budget_s=0.2).create(RULE)
    finally:
        release.set()
        t.join()
    with pytest.raises(StoreMissing):
        RuleStore(tmp_path / "none.duckdb").create(RULE)
    with pytest.raises(StoreMissing):
        with app_write(tmp_path / "none.duckdb"):
            pass
    assert not (tmp_path / "none.duckdb").exists()


def test_atomic_write_rolls_back_and_nested_modes_fail_fast(db):
    with pytest.raises(RuntimeError):
        with app_write(db, atomic=True) as con:
            alerts_sql.insert_rule(con, validate_rule(RULE).to_row())
            raise RuntimeError("abort")
    assert RuleStore(db).list() == []
    with read_connection(db):
        with pytest.raises(StoreError, match="already holds a ro connection"):
            with write_connection(db, budget_s=5):
                pass
    with app_write(db, create=True) as con:   # an existing file is kept as is
        assert con.execute("SELECT count(*) FROM alert_rules").fetchall() == [(0,)]
