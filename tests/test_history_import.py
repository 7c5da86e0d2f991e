"""Import of Binance public-data dumps (history.dumps, `ingestor.py import`).

Reference: the column layouts of binance-protocol.md §4 (spot trades 7 columns, spot aggTrades 8, USD-M trades 6,
USD-M aggTrades 7; spot without header, USD-M with; True/False vs true/false; ms or µs times). Dumps are generated
here from seeded rows, and what lands in the file is compared row by row with those rows.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from history import dumps
from history.dumps import STORE_MARKETS, DumpError, import_dumps, import_uploads, inspect_dump
from history.cli import main as history_main
from tickstore.connection import init_db, write_connection
from tickstore.state import claim_file
from tickstore.writer import insert_batch, rows_to_arrow

REPO = Path(__file__).resolve().parents[1]
T0_MS = 1_704_067_200_000          # 2024-01-01T00:00:00Z

UM_HEADERS = {"trades": "id,price,qty,quote_qty,time,is_buyer_maker",
              "aggTrades": "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"}
SPOT_HEADERS = {"trades": "trade_id,price,qty,quote_qty,time,is_buyer_maker,is_best_match",
                "aggTrades": "agg_trade_id,price,qty,first_trade_id,last_trade_id,transact_time,is_buyer_maker,"
                             "is_best_match"}


def make_rows(n: int, seed: int = 1, first_id: int = 5_000_000, t0_ms: int = T0_MS, step_ms: int = 37) -> pd.DataFrame:
    """Seeded trades: id, time (µs, exact), price (2 dp), qty (5 dp), maker flag."""
    rng = np.random.default_rng(seed)
    ts_us = t0_ms * 1000 + np.cumsum(rng.integers(0, step_ms * 2000, n)) + rng.integers(0, 1000, n)
    return pd.DataFrame({"trade_id": np.arange(first_id, first_id + n, dtype="int64"),
                         "ts_us": ts_us.astype("int64"),
                         "price": np.round(42_000 + np.cumsum(rng.normal(0, 3, n)), 2),
                         "qty": np.round(rng.lognormal(-3, 1, n), 5) + 0.00001,
                         "is_buyer_maker": rng.random(n) < 0.5})


def csv_text(rows: pd.DataFrame, venue: str, kind: str, header: bool, unit: str,
             invalid_agg_rows: int = 0) -> str:
    """The CSV Binance would publish for `rows` (µs → ms truncation when unit='ms')."""
    lines = []
    if header:
        lines.append((UM_HEADERS if venue == "usdm" else SPOT_HEADERS)[kind])
    t_true, t_false = ("True", "False") if venue == "spot" else ("true", "false")
    for r in rows.itertuples(index=False):
        t = r.ts_us if unit == "us" else r.ts_us // 1000
        m = t_true if r.is_buyer_maker else t_false
        if kind == "trades":
            f = [r.trade_id, f"{r.price:.2f}", f"{r.qty:.5f}", f"{r.price * r.qty:.8f}", t, m]
        else:
            f = [r.trade_id, f"{r.price:.2f}", f"{r.qty:.5f}", r.trade_id * 3, r.trade_id * 3 + 2, t, m]
        if venue == "spot":
            f.append("True")
        lines.append(",".join(map(str, f)))
    for k in range(invalid_agg_rows):   # Binance's marker for invalid duplicate spot aggTrades (SCL 2022-04-12)
        lines.insert(len(lines) // 2, f"{rows.trade_id.max() + 100 + k},0,0,-1,-1,{T0_MS + 5},True,True")
    return "\n".join(lines) + "\n"


def write_dump(directory: Path, rows: pd.DataFrame, venue: str = "spot", kind: str = "trades", header: bool = False,
               unit: str = "ms", symbol: str = "BTCUSDT", period: str = "2024-01-01", container: str = "zip",
               checksum: bool = False, text: str | None = None, invalid_agg_rows: int = 0) -> Path:
    """Write a dump file (zip or csv) as data.binance.vision names it; optionally with its .CHECKSUM."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{symbol}-{kind}-{period}"
    body = text if text is not None else csv_text(rows, venue, kind, header, unit, invalid_agg_rows)
    if container == "csv":
        path = directory / f"{stem}.csv"
        path.write_text(body)
    else:
        path = directory / f"{stem}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{stem}.csv", body)
    if checksum:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        path.with_name(path.name + ".CHECKSUM").write_text(f"{digest}  {path.name}\n")
    return path


def stored(db: Path, market: str | None = None) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute("""SELECT market, symbol, trade_id, epoch_us(ts) AS ts_us, price, qty, is_buyer_maker,
                                     recv_ts, source FROM ticks WHERE $m IS NULL OR market = $m
                              ORDER BY market, symbol, trade_id""", {"m": market}).df()


def snapshot(db: Path) -> tuple:
    """Everything an import could change."""
    with duckdb.connect(str(db), read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        ticks = con.execute("SELECT count(*), sum(trade_id), sum(price) FROM ticks").fetchall()
        manifest = con.execute("SELECT * FROM import_files ORDER BY sha256").fetchall() if "import_files" in tables else []
        events = con.execute("SELECT count(*) FROM ingest_events").fetchall()
    return ticks, manifest, events


def expected_frame(rows: pd.DataFrame, unit: str) -> pd.DataFrame:
    exp = rows.copy()
    if unit == "ms":
        exp["ts_us"] = exp["ts_us"] // 1000 * 1000
    return exp.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- formats

# every value of each dimension in the fast loop; the full product under `make test`
_FAST_FORMATS = {("spot", "trades", False, "ms"), ("usdm", "aggTrades", True, "us"), ("spot", "aggTrades", True, "ms"),
                 ("usdm", "trades", False, "us")}
FORMATS = [pytest.param(venue, kind, header, unit, id=f"{unit}-{'header' if header else 'noheader'}-{kind}-{venue}",
                        marks=() if (venue, kind, header, unit) in _FAST_FORMATS else pytest.mark.slow)
           for unit in ("ms", "us") for header in (False, True) for kind in ("trades", "aggTrades")
           for venue in ("spot", "usdm")]


@pytest.mark.parametrize("venue, kind, header, unit", FORMATS)
def test_import_each_format(tmp_path, venue, kind, header, unit):
    rows = make_rows(400, seed=hash((venue, kind, header, unit)) % 1000)
    path = write_dump(tmp_path / "dl", rows, venue, kind, header, unit, checksum=True)
    db = tmp_path / "ticks.duckdb"

    dump = inspect_dump(path)
    assert (dump.venue, dump.kind, dump.has_header, dump.checksum) == (venue, kind, header, "verified")
    [res] = import_dumps([path], db, batch_rows=150)

    market = STORE_MARKETS[(venue, kind)]
    assert (res.market, res.symbol, res.rows, res.inserted, res.duplicates) == (market, "BTCUSDT", 400, 400, 0)
    got = stored(db)
    assert set(got["market"]) == {market} and set(got["symbol"]) == {"BTCUSDT"}
    assert set(got["source"]) == {"import"} and got["recv_ts"].isna().all()
    exp = expected_frame(rows, unit)
    pd.testing.assert_frame_equal(got[["trade_id", "ts_us", "price", "qty", "is_buyer_maker"]], exp,
                                  check_dtype=False)


def test_id_spaces_are_kept_apart(tmp_path):
    """Live-compatible dumps keep the plain market name; the other id space of each venue gets its own label."""
    assert STORE_MARKETS == {("spot", "trades"): "spot", ("usdm", "aggTrades"): "usdm",
                             ("spot", "aggTrades"): "spot_agg", ("usdm", "trades"): "usdm_trades"}
    rows = make_rows(50)
    db = tmp_path / "t.duckdb"
    paths = [write_dump(tmp_path / v / k, rows, v, k, header=(v == "usdm")) for v in ("spot", "usdm")
             for k in ("trades", "aggTrades")]
    import_dumps(paths, db)
    counts = stored(db).groupby("market").size().to_dict()
    assert counts == {"spot": 50, "spot_agg": 50, "usdm": 50, "usdm_trades": 50}


def test_plain_csv_monthly_and_binance_directory_layout(tmp_path):
    rows = make_rows(120, seed=3)
    um_dir = tmp_path / "data" / "futures" / "um" / "monthly" / "aggTrades" / "ETHUSDT"
    p1 = write_dump(um_dir, rows, "usdm", "aggTrades", header=False, symbol="ETHUSDT", period="2024-01",
                    container="csv")
    assert inspect_dump(p1).venue == "usdm"
    # the path says USD-M: --market spot contradicts it and the layout
    with pytest.raises(DumpError, match="market spot was requested"):
        inspect_dump(p1, market="spot")
    results = import_dumps([tmp_path / "data"], tmp_path / "t.duckdb")   # a directory expands to its dumps
    assert [(r.market, r.symbol, r.inserted) for r in results] == [("usdm", "ETHUSDT", 120)]


def test_spot_aggtrades_invalid_marker_rows_are_skipped(tmp_path):
    rows = make_rows(80)
    path = write_dump(tmp_path, rows, "spot", "aggTrades", invalid_agg_rows=3)
    [res] = import_dumps([path], tmp_path / "t.duckdb")
    assert (res.rows, res.inserted, res.skipped_invalid) == (80, 80, 3)
    assert (stored(tmp_path / "t.duckdb")["price"] > 0).all()


# ---------------------------------------------------------------------------------------------- dedupe, resume

@pytest.mark.slow
@pytest.mark.parametrize("unit", ["ms", "us"])
def test_dedupe_against_live_ticks_and_reimport(tmp_path, unit):
    db = tmp_path / "t.duckdb"
    init_db(db)
    rows = make_rows(1000, seed=5)
    # The ingestor already stored the last 300 with ms times (as on the wire); with a µs dump the same trades
    # carry later times, and with 256-row batches one batch starts exactly on a stored trade.
    live = rows.iloc[700:].copy()
    live_rows = [("spot", "BTCUSDT", int(r.trade_id), int(r.ts_us // 1000 * 1000), float(r.price), float(r.qty),
                  bool(r.is_buyer_maker), int(r.ts_us) + 10_000, "ws") for r in live.itertuples()]
    with write_connection(db) as con:
        insert_batch(con, rows_to_arrow(live_rows))
    path = write_dump(tmp_path / "dl", rows, unit=unit)

    [res] = import_dumps([path], db, batch_rows=256)
    assert (res.rows, res.inserted, res.duplicates) == (1000, 700, 300)
    got = stored(db)
    assert len(got) == 1000 and got["trade_id"].is_unique
    assert (got.set_index("trade_id").loc[live["trade_id"], "source"] == "ws").all()   # live rows kept as they were

    [again] = import_dumps([path], db)          # same bytes: skipped via the manifest
    assert again.already_imported and again.inserted == 0
    same_csv = write_dump(tmp_path / "csv", rows, container="csv", unit=unit)   # other bytes: deduped by id
    [third] = import_dumps([same_csv], db)
    assert (third.inserted, third.duplicates) == (0, 1000)
    [forced] = import_dumps([path], db, force=True)
    assert (forced.already_imported, forced.inserted) == (False, 0)
    assert len(stored(db)) == 1000


@pytest.mark.slow
def test_interrupted_import_resumes_without_duplicates(tmp_path):
    db = tmp_path / "t.duckdb"
    rows = make_rows(2000, seed=11)
    path = write_dump(tmp_path, rows, "usdm", "aggTrades", header=True)
    seen = []

    def stop_after_two_batches(p):
        if p.stage == "import":
            seen.append(p.done)
            if p.done >= 1000:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_dumps([path], db, progress=stop_after_two_batches, batch_rows=500)
    assert seen == [0, 500, 1000]
    assert len(stored(db)) == 1000
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT rows_done, inserted, finished_at FROM import_files").fetchall() == [(1000, 1000, None)]

    [res] = import_dumps([path], db, batch_rows=500)
    assert (res.resumed_from, res.inserted, res.already_imported) == (1000, 1000, False)
    got = stored(db)
    assert len(got) == 2000 and got["trade_id"].is_unique
    pd.testing.assert_frame_equal(got[["trade_id", "ts_us"]], expected_frame(rows, "ms")[["trade_id", "ts_us"]])
    with duckdb.connect(str(db), read_only=True) as con:
        (done, ins, fin), = con.execute("SELECT rows_done, inserted, finished_at FROM import_files").fetchall()
        assert (done, ins) == (2000, 2000) and fin is not None
        assert con.execute("SELECT count FROM ingest_events WHERE kind = 'import'").fetchall() == [(2000,)]


def test_progress_reports_check_and_import(tmp_path):
    rows = make_rows(900)
    path = write_dump(tmp_path, rows)
    events = []
    import_dumps([path], tmp_path / "t.duckdb", progress=events.append, batch_rows=400)
    checks = [e for e in events if e.stage == "check"]
    imports = [e for e in events if e.stage == "import"]
    assert checks and checks[-1].done == checks[-1].total and checks[-1].unit == "bytes"
    assert [e.done for e in imports] == [0, 400, 800, 900] and imports[-1].total == 900


# ---------------------------------------------------------------------------------------------- wrong files

def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    rows = make_rows(3000, seed=2)
    good_text = csv_text(rows, "spot", "trades", False, "ms")
    lines = good_text.splitlines()
    out: dict[str, tuple[Path, str]] = {}

    def put(key, path, match):
        out[key] = (path, match)

    kl = "\n".join(f"{T0_MS + i * 60000},1,2,0.5,1.5,10,{T0_MS + i * 60000 + 59999},15,7,5,7,0" for i in range(5))
    put("klines name", write_dump(tmp / "a", rows, text=kl, symbol="BTCUSDT", kind="trades").rename(
        tmp / "a" / "BTCUSDT-1m-2024-01-01.zip"), "klines")
    put("klines content", write_dump(tmp / "b", rows, text=kl + "\n"), "12 columns")
    p = tmp / "c" / "BTCUSDT-trades-2024-01-01.zip"
    p.parent.mkdir()
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("a.csv", good_text)
        zf.writestr("b.csv", good_text)
    put("two members", p, "exactly one CSV")
    p = tmp / "d" / "BTCUSDT-trades-2024-01-01.zip"
    p.parent.mkdir()
    p.write_bytes(b"<html>404 Not Found</html>")
    put("not a zip", p, "not a zip")
    p = write_dump(tmp / "e", rows, checksum=True)
    p.with_name(p.name + ".CHECKSUM").write_text("0" * 64 + f"  {p.name}\n")
    put("checksum mismatch", p, "does not match")
    put("garbage mid-file", write_dump(tmp / "f", rows, text="\n".join(lines[:2500] + ["oops,,,,,,"] + lines[2500:])),
        "malformed CSV")
    put("short row mid-file", write_dump(tmp / "g", rows, text="\n".join(lines[:2900] + ["1,2,3"] + lines[2900:])),
        "malformed CSV")
    put("seconds timestamps", write_dump(tmp / "h", rows, text=good_text.replace(f",{rows.ts_us.iloc[1500] // 1000},",
                                                                              f",{rows.ts_us.iloc[1500] // 1000000},")),
        "line 1,501: time must be epoch ms")
    put("negative price", write_dump(tmp / "i", rows, text="\n".join(lines[:2999] + ["9,-1.0,1,1,1704067200000,True,True"])),
        "line 3,000: price must be a positive number")
    put("coin-margined header", write_dump(tmp / "j", rows, venue="usdm", text="id,price,qty,base_qty,time,is_buyer_maker\n"
                                                                            "1,2,3,4,1704067200000,true\n"), "COIN-M")
    put("empty", write_dump(tmp / "k", rows, text=""), "empty file")
    put("header only", write_dump(tmp / "l", rows, venue="usdm", text=UM_HEADERS["trades"] + "\n"), "no rows")
    put("unknown header", write_dump(tmp / "m", rows, text="a,b,c,d,e,f\n1,2,3,4,1704067200000,true\n"),
        "unexpected header")
    put("not a dump name", write_dump(tmp / "n", rows).rename(tmp / "n" / "prices.zip"), "not a Binance")
    put("layout vs --market", write_dump(tmp / "o", rows), "market usdm was requested")
    p = write_dump(tmp / "p", rows)
    data = bytearray(p.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 400, 7):      # damage the deflate stream, keep the zip index
        data[i] ^= 0xFF
    p.write_bytes(bytes(data))
    put("corrupt zip", p, "(cannot read the file|zip is damaged)")
    return out


@pytest.mark.slow
def test_wrong_files_are_rejected_and_change_nothing(tmp_path, monkeypatch):
    # small CSV blocks and batches: a bad row deep in a file comes after rows an import could already have stored
    monkeypatch.setattr(dumps, "_BLOCK_BYTES", 8192)
    db = tmp_path / "t.duckdb"
    good = write_dump(tmp_path / "good", make_rows(100, first_id=1))
    import_dumps([good], db)
    before = snapshot(db)
    for key, (path, match) in _bad_files(tmp_path / "bad").items():
        market = "usdm" if key == "layout vs --market" else None
        with pytest.raises(DumpError, match=match):
            import_dumps([path], db, market=market, batch_rows=1000)
        assert snapshot(db) == before, key


def test_csv_error_from_a_damaged_zip_is_reported_as_a_damaged_zip(tmp_path, monkeypatch):
    """The CSV reader reads ahead: garbage from a damaged deflate stream can fail the parse before the CRC check at
    the member's end is reached. Whichever comes first, the message names the zip as the cause."""
    p = write_dump(tmp_path, make_rows(3000))
    data = bytearray(p.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 400, 7):
        data[i] ^= 0xFF
    p.write_bytes(bytes(data))

    def parse_fails_first(dump, fh):
        raise pa.ArrowInvalid("CSV parse error: Expected 7 columns, got 17")

    monkeypatch.setattr(dumps, "_reader", parse_fails_first)
    with pytest.raises(DumpError, match="zip is damaged"):
        import_dumps([p], tmp_path / "t.duckdb")
    good = write_dump(tmp_path / "good", make_rows(3000))  # an intact zip keeps the CSV message
    with pytest.raises(DumpError, match="malformed CSV at or after line 1"):
        import_dumps([good], tmp_path / "t.duckdb")


def test_wrong_file_creates_no_tick_file(tmp_path):
    bad = write_dump(tmp_path, make_rows(10), text=csv_text(make_rows(10), "spot", "trades", False, "ms") + "1,2\n")
    with pytest.raises(DumpError, match="malformed CSV"):
        import_dumps([bad], tmp_path / "new" / "t.duckdb")
    assert not (tmp_path / "new").exists()


def test_demo_file_is_refused(tmp_path, capsys):
    db = tmp_path / "demo.duckdb"
    init_db(db)
    with write_connection(db) as con:
        claim_file(con, "demo")
    before = snapshot(db)
    path = write_dump(tmp_path, make_rows(20))
    assert history_main(["import", str(path), "--db", str(db)]) == 2
    assert "holds simulated demo ticks" in capsys.readouterr().err
    assert snapshot(db) == before


def test_one_bad_file_in_a_batch_imports_nothing(tmp_path, capsys):
    db = tmp_path / "t.duckdb"
    init_db(db)
    before = snapshot(db)
    good = write_dump(tmp_path / "good", make_rows(500))
    bad = write_dump(tmp_path / "bad", make_rows(5), symbol="ETHUSDT", text="1,2,3\n")
    rc = history_main(["import", str(good), str(bad), "--db", str(db)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("error: ETHUSDT-trades-2024-01-01.zip: 3 columns, but a trades dump has 7 (spot) or 6")
    assert snapshot(db) == before


def test_cli_reports_bad_arguments_on_one_line(tmp_path, capsys):
    assert history_main(["import", "--db", str(tmp_path / "t.duckdb")]) == 2
    assert history_main(["import", str(tmp_path / "missing.zip"), "--db", str(tmp_path / "t.duckdb")]) == 2
    assert history_main(["import", "x.zip", "--market", "coinm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "no such file" in err[1] and "invalid choice" in err[2]
    assert not (tmp_path / "t.duckdb").exists()


def test_cli_import_ok(tmp_path, capsys):
    path = write_dump(tmp_path, make_rows(321), "usdm", "trades", header=True, checksum=True)
    assert history_main(["import", str(path), "--db", str(tmp_path / "t.duckdb")]) == 0
    out = capsys.readouterr().out
    assert "321 rows → usdm_trades BTCUSDT: 321 new" in out


def test_ingestor_entry_point_rejects_wrong_file(tmp_path):
    bad = write_dump(tmp_path, make_rows(5), text="<html>not a dump</html>\n")
    db = tmp_path / "t.duckdb"
    proc = subprocess.run([sys.executable, "ingestor.py", "import", str(bad), "--db", str(db)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: BTCUSDT-trades-2024-01-01.zip:"), proc.stderr
    assert not db.exists()


# ---------------------------------------------------------------------------------------------- uploads

def test_import_uploads(tmp_path):
    rows = make_rows(250)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("SOLUSDT-aggTrades-2024-01-01.csv", csv_text(rows, "usdm", "aggTrades", True, "ms"))
    [res] = import_uploads([("SOLUSDT-aggTrades-2024-01-01.zip", buf.getvalue())], tmp_path / "t.duckdb")
    assert (res.market, res.symbol, res.inserted) == ("usdm", "SOLUSDT", 250)
    with pytest.raises(DumpError, match="notes.txt: not a Binance"):
        import_uploads([("notes.txt", b"hello")], tmp_path / "t.duckdb")


def test_timestamps_are_utc_and_exact(tmp_path):
    """µs spot file from 2025 (Binance switched spot dumps to µs on 2025-01-01)."""
    t0 = int(dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    rows = make_rows(10, t0_ms=t0)
    path = write_dump(tmp_path, rows, unit="us", period="2025-01-01")
    import_dumps([path], tmp_path / "t.duckdb")
    with duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True) as con:
        first = con.execute("SELECT min(ts) FROM ticks").fetchall()[0][0]
    assert first.utcoffset() == dt.timedelta(0)
    assert int(first.timestamp() * 1e6) == int(rows.ts_us.min())
