"""scanner.py end to end: a real tick file (part of it in the Parquet archive), the CLI run as a subprocess.

References: the CSV equals `quantlib.screen.screen_pairs` on `tickstore.queries.closes_wide` of the same window;
q-values equal statsmodels' Benjamini-Hochberg (`multipletests(method="fdr_bh")`) over the CSV's p-values;
the `--dask` run on a LocalCluster equals the local run row for row.
"""
from __future__ import annotations

import csv
import datetime as dt
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from tests.screen_db import END, START, UNIVERSE, make_universe_db

REPO = Path(__file__).resolve().parents[1]
CONTRACT = ["y", "x", "n_bars", "corr", "hedge_ratio", "eg_stat", "eg_pvalue", "eg_qvalue", "half_life_bars",
            "hurst", "verdict"]


@pytest.fixture(scope="module")
def universe(tmp_path_factory):
    return make_universe_db(tmp_path_factory.mktemp("scanner") / "ticks.duckdb")


def scan(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scanner.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def error_line(res: subprocess.CompletedProcess) -> str:
    """The run failed with exit 2 and exactly one stderr line, an ERROR log line; returns its message."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert " ERROR scanner: " in lines[0] and res.stdout == ""
    return lines[0].split(" ERROR scanner: ", 1)[1]


# --------------------------------------------------------------------------------------------- bad input

@pytest.mark.slow  # > 4 s on a loaded 2-core host
@pytest.mark.parametrize("args, expected", [
    (["--market", "coinbase"], "unknown market 'coinbase'; expected one of spot, usdm"),
    (["--market", "usdm"], "no usdm ticks in"),
    (["--timeframe", "7m"], "--timeframe: unknown timeframe '7m'; expected one of"),
    (["--lookback", "yesterday"], "--lookback: bad duration 'yesterday'"),
    (["--lookback", "1m", "--timeframe", "1m"], "holds fewer than two 1m bars"),
    (["--lookback", "30d", "--timeframe", "1s"], "--lookback 30d is 2,592,000 1s bars; at most 1,000,000 per scan"),
    (["--end", "soon"], "--end 'soon' is not a time; expected ISO-8601"),
    (["--end", "2024-13-45"], "is not a time"),
    (["--end", "2023-06-01T00:00Z"], "no spot ticks of any symbol in the window 2023-05-31 00:00Z to 2023-06-01 00:00Z"),
    (["--fdr", "1.5"], "--fdr '1.5' is not a rate; expected a number between 0 and 1"),
    (["--fdr", "abc"], "--fdr 'abc' is not a rate"),
    (["--top", "-3"], "--top '-3' is not a row count"),
    (["--symbols", "btcusdt"], "--symbols names 1 symbol; a pair screen needs at least two"),
    (["--symbols", "btcusdt,dogeusdt"], "unknown symbol(s) DOGEUSDT: no spot ticks stored for them"),
    (["--symbols", "btc-usdt,ethusdt"], "--symbols: bad symbol(s) BTC-USDT"),
    (["--symbols", "btcusdt,ethusdt", "--end", "2024-01-01T20:00Z", "--lookback", "30m"],
     "no spot ticks of those symbols in the window 2024-01-01 19:30Z to 2024-01-01 20:00Z"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--dask", "tcp://"], "is not a scheduler address"),
    (["--dask-timeout", "soon"], "--dask-timeout: bad duration"),
    (["--workers", "0"], "--workers '0' is not a process count"),
    (["--chunk-pairs", "x"], "--chunk-pairs 'x' is not a pair count"),
    (["--min-bars", "5"], "--min-bars '5' is too small; expected a whole number >= 32"),
])
def test_bad_input_is_one_line_and_exit_2(universe, args, expected):
    assert expected in error_line(scan("--db", str(universe.path), *args))


@pytest.mark.slow  # runs scanner.py in subprocesses
def test_fewer_than_two_symbols_in_the_window(tmp_path):
    path = tmp_path / "one.duckdb"
    make_universe_db(path, archive=False)
    with duckdb.connect(str(path)) as con:
        con.execute("DELETE FROM ticks WHERE symbol <> 'BTCUSDT'")
    msg = error_line(scan("--db", str(path)))
    assert "only BTCUSDT traded in the window" in msg and "needs at least two symbols" in msg


@pytest.mark.slow  # runs scanner.py in subprocesses
def test_bad_files(tmp_path, universe):
    msg = error_line(scan("--db", str(tmp_path / "missing.duckdb")))
    assert "does not exist" in msg
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"this is not a duckdb file" * 100)
    assert "is damaged" in error_line(scan("--db", str(junk)))
    assert "is a directory" in error_line(scan("--db", str(tmp_path)))
    assert "directory" in error_line(scan("--db", str(universe.path), "--out", str(tmp_path / "no" / "such" / "p.csv")))


@pytest.mark.slow  # runs scanner.py in subprocesses
def test_locked_file(tmp_path, universe):
    path = tmp_path / "locked.duckdb"
    shutil.copy(universe.path, path)
    shutil.copytree(universe.path.parent / "archive", tmp_path / "archive")
    con = duckdb.connect(str(path))                    # a writer holding the file (the ingestor never does this)
    try:
        assert "is locked by another process" in error_line(scan("--db", str(path)))
    finally:
        con.close()


@pytest.mark.slow  # runs scanner.py in subprocesses
def test_unreachable_dask_scheduler(universe):
    with socket.socket() as s:                        # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    msg = error_line(scan("--db", str(universe.path), "--dask", f"tcp://127.0.0.1:{port}", "--dask-timeout", "1s"))
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in msg


# --------------------------------------------------------------------------------------------- scans

def screen_reference(universe, fdr=0.05, timeframe="1m", lookback=dt.timedelta(hours=8), symbols=None):
    from quantlib.screen import screen_pairs
    from tickstore.queries import closes_wide

    closes = closes_wide("spot", symbols, timeframe, lookback, path=universe.path)
    return closes, screen_pairs(closes, fdr=fdr)


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


@pytest.mark.slow  # runs scanner.py in subprocesses
def test_scan_over_archive_and_hot_matches_the_library(universe, tmp_path):
    out = tmp_path / "pairs.csv"
    res = scan("--db", str(universe.path), "--lookback", "8h", "--top", "5", "--out", str(out))
    assert res.returncode == 0, res.stderr
    got = read_csv(out)
    n = len(UNIVERSE)
    assert len(got) == n * (n - 1) // 2
    assert list(got.columns[:len(CONTRACT)]) == CONTRACT
    # one row per unordered pair
    assert len({frozenset(p) for p in zip(got["y"], got["x"])}) == len(got)
    closes, ref = screen_reference(universe)
    assert closes.index[0] == pd.Timestamp(START) and closes.index[-1] == pd.Timestamp(END) - pd.Timedelta("1m")
    expected = ref.pairs.reset_index(drop=True)
    for col in CONTRACT:
        if pd.api.types.is_float_dtype(expected[col]):
            np.testing.assert_allclose(got[col].to_numpy(float), expected[col].to_numpy(float), rtol=1e-12, atol=0)
        else:
            assert got[col].astype(str).tolist() == expected[col].astype(str).tolist(), col
    # the planted pair is found and ranks first; the factor look-alikes are not significant
    assert {got.loc[0, "y"], got.loc[0, "x"]} == {"BTCUSDT", "ETHUSDT"}
    assert got.loc[0, "eg_qvalue"] < 0.05 and (got.loc[1:, "eg_qvalue"] > 0.05).all()
    assert got["n_bars"].iloc[0] == 480
    # stdout: a table of the top 5 rows, then the summary
    lines = res.stdout.strip().splitlines()
    assert all(c in lines[0] for c in ("y", "x", "eg_qvalue", "half_life_bars", "verdict"))
    assert len([ln for ln in lines[1:] if ln.split() and ln.split()[0].isdigit()]) == 5
    assert lines[-1].startswith(ref.summary().splitlines()[0])
    assert lines[-1].endswith("spot 1m closes, 480 bars from 2024-01-01T20:00:00Z to 2024-01-02T04:00:00Z")
    assert "screened" in res.stderr and "pairs/s" in res.stderr


@pytest.mark.slow  # runs scanner.py in subprocesses
def test_qvalues_are_benjamini_hochberg_over_all_pairs(universe, tmp_path):
    from statsmodels.stats.multitest import multipletests

    out = tmp_path / "pairs.csv"
    assert scan("--db", str(universe.path), "--timeframe", "5m", "--top", "0", "--out", str(out)).returncode == 0
    got = read_csv(out)
    ok = got["eg_pvalue"].notna()
    _, q, _, _ = multipletests(got.loc[ok, "eg_pvalue"], alpha=0.05, method="fdr_bh")
    np.testing.assert_allclose(got.loc[ok, "eg_qvalue"], q, rtol=1e-10)


@pytest.mark.slow  # runs scanner.py in subprocesses
def test_symbols_end_and_lookback_pick_the_window(universe, tmp_path):
    out = tmp_path / "pairs.csv"
    res = scan("--db", str(universe.path), "--symbols", "ethusdt,btcusdt,solusdt", "--end", "2024-01-01T23:00:00Z",
               "--lookback", "2h", "--timeframe", "1m", "--out", str(out))
    assert res.returncode == 0, res.stderr
    got = read_csv(out)
    assert len(got) == 3 and set(got["y"]) | set(got["x"]) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    assert (got["n_bars"] == 120).all()                 # 21:00..22:59, read from the archive only


@pytest.mark.slow  # runs scanner.py in subprocesses
def test_a_requested_symbol_idle_in_the_window_is_reported_not_dropped(tmp_path):
    path = tmp_path / "idle.duckdb"
    make_universe_db(path, archive=False)
    with duckdb.connect(str(path)) as con:
        con.execute("DELETE FROM ticks WHERE symbol = 'XRPUSDT' AND ts >= '2024-01-02 00:00:00+00'")
    out = tmp_path / "pairs.csv"
    res = scan("--db", str(path), "--symbols", "btcusdt,ethusdt,xrpusdt", "--lookback", "2h", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "no trades of XRPUSDT in the window" in res.stderr
    got = read_csv(out)
    assert len(got) == 3
    idle = got[(got["y"] == "XRPUSDT") | (got["x"] == "XRPUSDT")]
    assert len(idle) == 2 and (idle["n_bars"] == 0).all() and idle["eg_pvalue"].isna().all()


@pytest.mark.slow  # runs scanner.py in subprocesses
def test_csv_columns_and_utc_window(universe, tmp_path):
    out = tmp_path / "pairs.csv"
    assert scan("--db", str(universe.path), "--top", "0", "--lookback", "3h", "--out", str(out)).returncode == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0])
    assert header[:len(CONTRACT)] == CONTRACT
    assert header[-4:] == ["market", "timeframe", "window_start", "window_end"]
    assert {(r["market"], r["timeframe"], r["window_start"], r["window_end"]) for r in rows} == {
        ("spot", "1m", "2024-01-02T01:00:00Z", "2024-01-02T04:00:00Z")}
    assert all(r["verdict"] for r in rows) and not (tmp_path / ".pairs.csv.tmp").exists()


def test_end_parsing_is_utc():
    import scanner

    utc = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    assert scanner.parse_end("2024-05-01T12:00Z") == utc
    assert scanner.parse_end("2024-05-01 12:00") == utc                   # no offset: UTC
    assert scanner.parse_end("2024-05-01T14:00:00+02:00") == utc
    assert scanner.parse_end("2024-05-01") == utc.replace(hour=0)
    assert scanner.parse_end("2024-05-01T14:00:00+02:00").tzinfo == dt.UTC
    with pytest.raises(scanner.BadInput, match="not a time"):
        scanner.parse_end("01/05/2024")


def pair_chunks(symbols, size):
    from quantlib.screen import pair_chunks as chunks

    return chunks(symbols, size)


def assert_same_rows(got: pd.DataFrame, ref: pd.DataFrame, exact: bool) -> None:
    """Same pairs in the same order with the same values: bit for bit when the chunking is the same; when it
    differs, floats may differ in the last bits (the screen batches the pairs of a chunk together; a tail p-value
    amplifies that to ~1e-11 relative)."""
    if exact:
        pd.testing.assert_frame_equal(got, ref, check_exact=True)
    else:
        pd.testing.assert_frame_equal(got, ref, check_exact=False, rtol=1e-9, atol=0)


@pytest.mark.slow
def test_process_pool_gives_the_same_rows(universe, tmp_path):
    default, local, pooled = tmp_path / "default.csv", tmp_path / "local.csv", tmp_path / "pool.csv"
    assert scan("--db", str(universe.path), "--top", "0", "--out", str(default)).returncode == 0
    assert scan("--db", str(universe.path), "--top", "0", "--out", str(local), "--chunk-pairs", "4").returncode == 0
    res = scan("--db", str(universe.path), "--top", "0", "--out", str(pooled), "--workers", "2", "--chunk-pairs", "4",
               timeout=600)
    assert res.returncode == 0, res.stderr
    n = len(pair_chunks(sorted(UNIVERSE), 4))
    assert n > 2 and f"in {n} chunk(s) in 2 local processes" in res.stderr and f"screened {n}/{n} chunks" in res.stderr
    assert_same_rows(read_csv(pooled), read_csv(local), exact=True)
    assert_same_rows(read_csv(pooled), read_csv(default), exact=False)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_rows(universe, tmp_path):
    from distributed import LocalCluster

    default, local, remote = tmp_path / "default.csv", tmp_path / "local.csv", tmp_path / "dask.csv"
    assert scan("--db", str(universe.path), "--top", "0", "--out", str(default)).returncode == 0
    assert scan("--db", str(universe.path), "--top", "0", "--out", str(local), "--chunk-pairs", "3").returncode == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        res = scan("--db", str(universe.path), "--top", "3", "--out", str(remote), "--dask", cluster.scheduler_address,
                   "--chunk-pairs", "3", timeout=600)
    assert res.returncode == 0, res.stderr
    n = len(pair_chunks(sorted(UNIVERSE), 3))
    assert n > 2 and f"in {n} chunk(s) on {cluster.scheduler_address}" in res.stderr
    assert f"screened {n}/{n} chunks" in res.stderr
    assert_same_rows(read_csv(remote), read_csv(local), exact=True)
    assert_same_rows(read_csv(remote), read_csv(default), exact=False)
