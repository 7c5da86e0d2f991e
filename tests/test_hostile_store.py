"""A damaged tick file or a full disk: every command says so in one line and exits 2, never a traceback, never a
misleading "locked" after a long wait."""
from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from exchange.server import LocalExchange
from history.cli import main as history_main
from tests.conftest import make_tick_db
from tests.feedcheck import wait_for
from tests.test_history_import import make_rows, write_dump
from tickstore.connection import StoreDamaged, read_connection

ROOT = Path(__file__).resolve().parents[1]
HEADER_END = 3 * 4096          # DuckDB's file header and its two database headers
BLOCK = 256 * 1024


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("damaged") / "good.duckdb"
    make_tick_db(path, hours=3, rate_per_s=2.0)
    return path


def damaged(template: Path, dest: Path, block: int) -> Path:
    shutil.copy(template, dest)
    with open(dest, "r+b") as f:
        f.seek(HEADER_END + block * BLOCK + 100)
        f.write(os.urandom(4096))
    return dest


@pytest.fixture
def header_damaged(template, tmp_path) -> Path:
    """The first block (catalog) fails its checksum: the file cannot even be opened."""
    return damaged(template, tmp_path / "t.duckdb", 0)


@pytest.fixture
def data_damaged(template, tmp_path) -> Path:
    """Opens fine, but a block of tick data fails its checksum when the ticks are read."""
    for k in range(1, template.stat().st_size // BLOCK + 1):
        path = damaged(template, tmp_path / f"t{k}.duckdb", k)
        try:
            with duckdb.connect(str(path), read_only=True) as con:
                con.execute("SELECT market, symbol, max(trade_id) FROM ticks GROUP BY ALL").fetchall()
        except duckdb.Error as exc:
            if "checksum" in str(exc).lower():
                return path
    pytest.skip("no tick-data block found to damage")


def _one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert "Traceback" not in text, text[-3000:]
    return lines[-1]


def test_damaged_file_is_reported_as_damaged_not_locked(header_damaged):
    with pytest.raises(StoreDamaged, match="is damaged .*restore it from a backup"):
        with read_connection(header_damaged, budget_s=30):
            pass


def test_truncated_file_is_reported_as_damaged(template, tmp_path):
    path = tmp_path / "t.duckdb"
    shutil.copy(template, path)
    with open(path, "r+b") as f:
        f.truncate(5000)  # inside the headers: a download or copy cut short
    with pytest.raises(StoreDamaged, match="is damaged"):
        with read_connection(path, budget_s=30):
            pass


@pytest.mark.parametrize("cmd", ["list", "create"])
def test_alerts_cli_on_a_damaged_file(header_damaged, cmd):
    args = [] if cmd == "list" else ['{"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 1}']
    r = subprocess.run([sys.executable, "-m", "alerts.cli", "--db", str(header_damaged), cmd, *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    out = json.loads(_one_line(r.stdout))
    assert r.returncode == 2 and out["kind"] == "damaged" and "locked" not in out["error"], (r.returncode, out)


def _rule_rows(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:  # the rules' own blocks are intact
        return con.execute("SELECT count(*) FROM alert_rules").fetchall()[0][0]


def test_alerts_cli_create_refuses_a_file_whose_ticks_are_damaged(data_damaged):
    """The file opens and its rule table is fine, but its tick data is not: no rule is written into it."""
    rule = '{"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 1}'
    r = subprocess.run([sys.executable, "-m", "alerts.cli", "--db", str(data_damaged), "create", rule], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    out = json.loads(_one_line(r.stdout))
    assert r.returncode == 2 and out["kind"] == "damaged", (r.returncode, out)
    assert "is damaged" in out["error"] and "nothing was written" in out["error"]
    assert _rule_rows(data_damaged) == 0


def test_rule_store_refuses_a_file_cut_short_in_its_data(template, tmp_path):
    from alerts.rules import RuleStore

    path = tmp_path / "cut.duckdb"
    shutil.copy(template, path)
    with open(path, "r+b") as f:
        f.truncate(HEADER_END + 2 * BLOCK)  # headers and catalog kept, most tick blocks gone
    with pytest.raises(StoreDamaged, match="is damaged"):
        RuleStore(path).create({"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 1})


def test_rule_store_writes_into_a_sound_file(template, tmp_path):
    from alerts.rules import RuleStore

    path = tmp_path / "ok.duckdb"
    shutil.copy(template, path)
    rule = RuleStore(path).create({"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 1})
    assert rule.id is not None and _rule_rows(path) == 1


@pytest.mark.parametrize("sub", ["import", "archive"])
def test_history_commands_on_a_damaged_file(header_damaged, tmp_path, sub, capsys):
    args = ([str(write_dump(tmp_path / "dl", make_rows(50)))] if sub == "import" else ["--older-than", "1d"])
    assert history_main([sub, *args, "--db", str(header_damaged)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "is damaged" in line and "locked" not in line


@pytest.mark.slow
def test_ingestor_on_a_file_whose_ticks_are_damaged(data_damaged):
    ex = LocalExchange(symbols=["BTCUSDT", "ETHUSDT"], seed=2, rate=5.0).start()
    try:
        r = subprocess.run([sys.executable, str(ROOT / "ingestor.py"), "--symbols", "btcusdt,ethusdt",
                            "--db", str(data_damaged), "--ws-url", ex.ws_url, "--rest-url", ex.http_url],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        ex.stop()
    line = _one_line(r.stderr)
    assert r.returncode == 2 and "is damaged" in line, r.stderr[-3000:]


def test_archive_disk_full_is_one_line(tmp_path, monkeypatch, capsys):
    from tickstore import archive

    db = tmp_path / "ticks.duckdb"
    end = dt.datetime(2024, 1, 5, 12, tzinfo=dt.UTC)
    make_tick_db(db, hours=48, rate_per_s=0.02, end=end)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archive, "_write_parquet", full)
    assert history_main(["archive", "--older-than", "1d", "--db", str(db)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "disk full" in line and "free some space" in line


def test_import_disk_full_is_one_line(tmp_path, monkeypatch, capsys):
    from history import dumps

    def full(*a, **k):
        raise duckdb.IOException('Could not write file "t.duckdb.wal": No space left on device')

    monkeypatch.setattr(dumps, "insert_dedup", full)
    path = write_dump(tmp_path / "dl", make_rows(50))
    assert history_main(["import", str(path), "--db", str(tmp_path / "t.duckdb")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "disk full" in line


# ------------------------------------------------------------------------------- the file deleted or replaced

def _rows(ids, t0_us):
    return [("spot", "BTCUSDT", i, t0_us + i * 1000, 100.0 + i % 3, 1.0, bool(i % 2), None, "ws") for i in ids]


def _ticks(db):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*) FROM ticks").fetchone()[0]


def test_file_deleted_while_writing_is_created_again_and_nothing_in_memory_is_lost(tmp_path):
    from tickstore.connection import init_db
    from tickstore.state import claim_file
    from tickstore.writer import TickBuffer, TickWriter

    db = init_db(tmp_path / "t.duckdb")
    t0 = (int(dt.datetime.now(dt.UTC).timestamp()) - 600) * 1_000_000
    buf = TickBuffer()
    w = TickWriter(db, buf, flush_ms=20)
    w.on_recreate = lambda con: claim_file(con, "live")
    w.start()
    try:
        buf.extend(_rows(range(0, 100), t0))
        assert wait_for(lambda: _ticks(db) == 100, 30)
        db.unlink()
        buf.extend(_rows(range(100, 150), t0))
        assert wait_for(lambda: db.exists() and _ticks(db) == 50, 30)
        assert w.fatal is None
    finally:
        assert w.stop() == 0
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT value FROM tickdesk_meta WHERE key = 'data'").fetchone() == ("live",)
        assert con.execute("SELECT min(trade_id), max(trade_id) FROM ticks").fetchone() == (100, 149)


def test_file_replaced_while_writing_is_never_written_and_stop_reports_the_ticks(tmp_path):
    from tickstore.connection import init_db
    from tickstore.writer import TickBuffer, TickWriter

    db = init_db(tmp_path / "t.duckdb")
    other = init_db(tmp_path / "other.duckdb")
    t0 = (int(dt.datetime.now(dt.UTC).timestamp()) - 600) * 1_000_000
    buf = TickBuffer()
    w = TickWriter(db, buf, flush_ms=20).start()
    try:
        buf.extend(_rows(range(0, 100), t0))
        assert wait_for(lambda: _ticks(db) == 100, 30)
        os.replace(other, db)  # e.g. a demo file copied over the live one
        buf.extend(_rows(range(100, 150), t0))
        assert wait_for(lambda: w.fatal is not None, 30)
        assert "replaced by another file" in w.fatal
    finally:
        lost = w.stop(timeout=2)
    assert lost == 50 and _ticks(db) == 0


def test_ranged_check_finds_a_damaged_data_block_and_releases_the_file_between_ranges(data_damaged, monkeypatch):
    """The once-per-process check reads the file in rowid ranges, one short connection each (so the ingestor's
    flushes wait for one range, not the whole file), and still meets the bad block wherever it lies."""
    from tickstore import appwrite

    opened = []
    real = appwrite.read_connection

    def counting(path, budget_s=2.0, views=True):
        opened.append(budget_s)
        return real(path, budget_s=budget_s, views=views)

    monkeypatch.setattr(appwrite, "CHECK_ROWS", 2_000)
    monkeypatch.setattr(appwrite, "read_connection", counting)
    with pytest.raises(StoreDamaged, match="is damaged"):
        appwrite.verify_file(data_damaged, budget_s=7.0)
    assert len(opened) > 3 and set(opened) == {7.0}


def test_background_check_makes_the_first_save_skip_it(template, tmp_path, monkeypatch):
    from alerts.rules import RuleStore
    from tickstore import appwrite

    path = tmp_path / "bg.duckdb"
    shutil.copy(template, path)
    monkeypatch.setattr(appwrite, "CHECK_ROWS", 5_000)
    RuleStore(path).check_in_background()
    assert wait_for(lambda: (os.stat(path).st_dev, os.stat(path).st_ino) in appwrite._verified, 60)
    monkeypatch.setattr(appwrite, "_check_in_ranges", lambda *a: pytest.fail("checked twice"))
    rule = RuleStore(path).create({"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 1})
    assert rule.id is not None and _rule_rows(path) == 1
