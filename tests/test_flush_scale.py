"""What a flush costs must follow the trades, not the number of symbols: status rows only for symbols that changed
(all of them every few seconds), the alert engine's batch grouping equal to a per-symbol filter, and the anti-join's
time ranges never letting a stored trade in twice."""
from __future__ import annotations

import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import feed.state as feed_state
from alerts.engine import _TickGroups
from feed.state import IngestState
from tickstore.connection import init_db, write_connection
from tickstore.writer import RANGE_GAP_US, RANGE_SLACK_US, insert_batch, rows_to_arrow, time_ranges

T0_US = 1_767_225_600_000_000  # 2026-01-01 UTC


def tick(symbol, trade_id, ts_us, price=100.0, market="spot"):
    return (market, symbol, trade_id, int(ts_us), float(price), 1.0, False, int(ts_us), "ws")


# ------------------------------------------------------------------------------------------------ status rows
def _status(db):
    with duckdb.connect(str(db), read_only=True) as con:
        return {s: (n, u) for s, n, u in con.execute(
            "SELECT symbol, ticks_total, epoch_us(updated_at) FROM ingest_status").fetchall()}


def _write(state, db):
    with write_connection(db) as con:
        state.write_status(con, rows_to_arrow([]), 0)


def test_status_rows_are_written_when_they_change_and_all_of_them_every_refresh(tmp_path, monkeypatch):
    db = init_db(tmp_path / "s.duckdb")
    state = IngestState()
    names = [f"S{i:02d}USDT" for i in range(50)]
    for i, sym in enumerate(names):
        state.stats("spot", sym).ticks_total = i
    state.set_link("spot", "spot#1", names, True)
    _write(state, db)
    first = _status(db)
    assert len(first) == 50 and first["S07USDT"][0] == 7
    time.sleep(0.002)
    state.stats("spot", "S03USDT").ticks_total += 5
    _write(state, db)
    second = _status(db)
    assert second["S03USDT"][0] == 8 and second["S03USDT"][1] > first["S03USDT"][1]
    assert all(second[s] == first[s] for s in first if s != "S03USDT")  # untouched rows were not rewritten
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ingest_status WHERE connected").fetchall()[0][0] == 50
    state.set_link("spot", "spot#1", names, False)  # a connection going down reaches every row it carries at once
    _write(state, db)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ingest_status WHERE connected").fetchall()[0][0] == 0
    monkeypatch.setattr(feed_state, "STATUS_REFRESH_S", 0.0)
    time.sleep(0.002)
    before = _status(db)
    _write(state, db)
    after = _status(db)
    assert all(after[s][1] > before[s][1] for s in before)  # the refresh rewrites every row (updated_at moves)


def test_a_failed_status_write_is_repeated(tmp_path, monkeypatch):
    db = init_db(tmp_path / "f.duckdb")
    state = IngestState()
    state.stats("spot", "BTCUSDT").ticks_total = 3

    def broken(con, rows):
        raise duckdb.IOException("disk went away")

    with monkeypatch.context() as mp:
        mp.setattr(feed_state, "upsert_ingest_status", broken)
        with pytest.raises(duckdb.IOException):
            _write(state, db)
    _write(state, db)  # nothing changed since, but the row never made it: written now
    assert _status(db)["BTCUSDT"][0] == 3


# ---------------------------------------------------------------------------------------- alert batch grouping
def _naive(batch: pa.Table, market: str, symbol: str):
    sub = batch.filter(pc.and_(pc.equal(batch["market"], market), pc.equal(batch["symbol"], symbol)))
    ids, first = np.unique(sub["trade_id"].to_numpy(), return_index=True)
    return ids, sub["price"].to_numpy()[first], sub["ts"].cast(pa.int64()).to_numpy()[first]


def test_batch_groups_equal_a_filter_per_symbol():
    rng = np.random.default_rng(3)
    rows = []
    for k in range(3000):
        m = "usdm" if rng.random() < 0.3 else "spot"
        s = f"S{int(rng.integers(0, 40)):02d}USDT"
        i = int(rng.integers(0, 400))
        rows.append(tick(s, i, T0_US + int(rng.integers(0, 10**7)), price=float(rng.normal(100, 5)), market=m))
    rows += rows[:200]  # the same trades twice (a backfill overlapping the stream)
    batch = rows_to_arrow(rows)
    groups = _TickGroups(batch)
    keys = {(r[0], r[1]) for r in rows} | {("spot", "NOPEUSDT"), ("coinm", "S01USDT")}
    summary = groups.summary(keys)
    for m, s in keys:
        ids, prices, ts = groups.get(m, s)
        ref = _naive(batch, m, s)
        for got, want in zip((ids, prices, ts), ref):
            np.testing.assert_array_equal(got, want)
        if len(ref[0]) == 0:
            assert (m, s) not in summary
            continue
        sub = batch.filter(pc.and_(pc.equal(batch["market"], m), pc.equal(batch["symbol"], s)))
        assert summary[(m, s)].newest == (int(ref[0][-1]), int(ref[2][-1]), float(ref[1][-1]))
        assert summary[(m, s)].oldest_us == pc.min(sub["ts"].cast(pa.int64())).as_py()


def test_batch_groups_of_an_empty_batch():
    g = _TickGroups(rows_to_arrow([]))
    assert g.summary({("spot", "BTCUSDT")}) == {} and len(g.get("spot", "BTCUSDT")[0]) == 0
    assert _TickGroups(None).summary({("spot", "BTCUSDT")}) == {}


# --------------------------------------------------------------------------------------- anti-join time ranges
def test_time_ranges_split_at_pauses_and_stay_bounded():
    live = T0_US + np.arange(0, 250_000, 1_000)
    old = T0_US - 3_600_000_000 + np.arange(0, 5_000_000, 10_000)
    r = time_ranges(np.concatenate([live, old]))
    assert r == [(int(old[0]) - RANGE_SLACK_US, int(old[-1]) + RANGE_SLACK_US),
                 (int(live[0]) - RANGE_SLACK_US, int(live[-1]) + RANGE_SLACK_US)]
    sparse = T0_US + np.arange(100) * 10 * RANGE_GAP_US  # 100 trades far apart: at most 16 ranges, covering all
    r = time_ranges(sparse[::-1].copy())
    assert len(r) == 16
    assert all(any(a <= t <= b for a, b in r) for t in sparse)


def test_insert_skips_stored_trades_in_every_range_of_a_batch(tmp_path):
    db = init_db(tmp_path / "a.duckdb")
    hour = 3_600_000_000
    old = [tick("BTCUSDT", i, T0_US - hour + i * 1_000) for i in range(100)]
    live = [tick("BTCUSDT", 10_000 + i, T0_US + i * 1_000) for i in range(100)]
    other = [tick("ETHUSDT", i, T0_US - hour // 2 + i * 1_000) for i in range(50)]
    with write_connection(db) as con:
        assert insert_batch(con, rows_to_arrow(old[:60] + live[:60] + other[:10])) == 130
        # the rest of each range plus everything already stored, in one batch spanning an hour
        assert insert_batch(con, rows_to_arrow(old + live + other)) == 40 + 40 + 40
        n, distinct = con.execute("SELECT count(*), count(DISTINCT (symbol, trade_id)) FROM ticks").fetchall()[0]
    assert n == distinct == 250


# ------------------------------------------------------------------------------------- alert bars, read again
def test_alert_bars_are_read_again_only_from_the_bars_that_changed(tmp_path, monkeypatch):
    """A new bar reads only the bars closed since the last read; a late trade has its bar and the later ones read
    again (not the whole window); the values equal a fresh computation every time."""
    import datetime as dt

    from alerts.metrics import BatchSummary, MetricSource
    from alerts.rules import validate_rule
    from tickstore import alerts_sql

    minute = 60_000_000
    db = init_db(tmp_path / "bars.duckdb")
    rule = validate_rule({"market": "spot", "symbol": "BTCUSDT", "metric": "rsi", "timeframe": "1m", "lookback": 5,
                          "op": ">", "threshold": 100})  # 21 one-minute bars
    prices = 100 + np.cumsum(np.random.default_rng(4).normal(0, 1, 400))
    rows = [tick("BTCUSDT", i, T0_US + i * 10_000_000, price=prices[i]) for i in range(0, 400, 2)]
    late = [tick("BTCUSDT", i, T0_US + i * 10_000_000, price=prices[i] + 5) for i in range(1, 400, 2)]
    reads = []
    real = alerts_sql.bar_closes

    def spy(con, market, symbols, step_s, start, end=None):
        reads.append((int(start.timestamp() * 1e6), int(end.timestamp() * 1e6)))
        return real(con, market, symbols, step_s, start, end)

    monkeypatch.setattr(alerts_sql, "bar_closes", spy)
    src = MetricSource()
    at = lambda us: dt.datetime.fromtimestamp(us / 1e6, dt.UTC)  # noqa: E731

    def value(now_us, batch=None):
        src.begin(con, at(now_us), batch=batch)
        got = src.observe(rule).value
        src.end()
        fresh = MetricSource()
        fresh.begin(con, at(now_us))
        want = fresh.observe(rule).value
        fresh.end()
        assert got == pytest.approx(want, rel=1e-12) and got is not None
        return reads.pop(0)  # the engine's read (the fresh one's follows)

    with write_connection(db) as con:
        insert_batch(con, rows_to_arrow(rows))
        now = T0_US + 40 * minute + 5_000_000
        cur = now // minute * minute
        assert value(now) == (cur - 20 * minute, cur)  # first: the whole window
        reads.clear()
        assert value(now + minute) == (cur, cur + minute)  # a new bar: only the one that closed
        reads.clear()
        back = [r for r in late if cur - 4 * minute <= r[3] < cur - 3 * minute]  # a backfill into a closed bar
        insert_batch(con, rows_to_arrow(back))
        summary = {("spot", "BTCUSDT"): BatchSummary((back[-1][2], back[-1][3], back[-1][4]), back[0][3])}
        assert value(now + minute + 1_000_000, summary) == (cur - 4 * minute, cur + minute)
        reads.clear()
        src.begin(con, at(now + minute + 2_000_000))  # nothing new: no read at all
        src.observe(rule)
        src.end()
        assert reads == []


# ------------------------------------------------------------------------------ connections through one instance
def test_connections_hold_the_file_only_while_open_and_renew_their_instance(tmp_path, monkeypatch):
    """Writes and reads go through one in-memory instance per process that attaches the file: another process can
    open the file as soon as the last connection closed (committed, checkpointed: no WAL left), not while one is
    open; after RENEW_AFTER attaches the instance is replaced and nothing is lost."""
    import subprocess
    import sys

    from tickstore import connection

    monkeypatch.setattr(connection._Host, "RENEW_AFTER", 3)
    db = init_db(tmp_path / "h.duckdb")
    # another process (one, started once) opens the file afresh on each request: "count" or "error: ..."
    other = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys\n"
         "for path in sys.stdin:\n"
         "    try:\n"
         "        c = duckdb.connect(path.strip(), read_only=True)\n"
         "        print(c.execute('SELECT count(*) FROM ticks').fetchone()[0], flush=True)\n"
         "        c.close()\n"
         "        del c\n"
         "    except Exception as exc:\n"
         "        print('error:', str(exc).replace(chr(10), ' '), flush=True)\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def open_elsewhere() -> str:
        other.stdin.write(f"{db}\n")
        other.stdin.flush()
        return other.stdout.readline().strip()

    host = connection._host(db, False)
    instances = []  # the objects themselves (kept alive: distinct ids)
    try:
        for i in range(7):
            with write_connection(db) as con:
                if not any(inst is host._inst for inst in instances):
                    instances.append(host._inst)
                insert_batch(con, rows_to_arrow([tick("BTCUSDT", i, T0_US + i)]))
                held = open_elsewhere()
                assert held.startswith("error:") and "lock" in held.lower(), held
            assert not db.with_name(db.name + ".wal").exists()
            assert open_elsewhere() == str(i + 1)
            with connection.read_connection(db) as con:
                assert con.execute("SELECT count(*) FROM ticks_all").fetchone()[0] == i + 1
    finally:
        other.stdin.close()
        other.wait(30)
    assert len(instances) == 3  # attaches 1-3, 4-6, 7
