"""Ingest throughput benchmark: the local exchange blasts N trades; how fast do they reach the DuckDB file?

    python bench/ingest.py [--trades 500000] [--symbols 4] [--flush-ms 250] [--lock-seconds 10] [--no-doc]

The exchange runs in its own process (bench/exchange_proc.py) and writes pre-built frames as fast as the socket
drains, so the receiving side is what is measured. In the same run:
  1. baseline: a bare websocket-client + orjson loop that only parses and counts (no storage);
  2. reference: a raw-socket loop that splits frames itself and parses them with orjson (no websocket-client);
  3. the ingestor (feed.ingest.Ingestor, default flush) end to end: from the first frame received to the last
     row committed to a fresh DuckDB file, with the file checked afterwards (every id once, none missing);
  4. the same while another process holds the file open read-only for --lock-seconds: the blast arrives while
     the writer cannot write; the table shows how much it buffered, the memory that took, and that nothing was
     lost once the reader let go.
Rates are trades per second over the whole blast. Prints tables and writes docs/bench-ingest.md. No time assertions.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import report  # noqa: F401  (bench/report.py; puts the repo root on sys.path)
from exchange_proc import ExchangeProcess

import duckdb
import orjson
import psutil
import websocket

from feed.ingest import IngestConfig, Ingestor

ALL_SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "AVAXUSDT"]
OUT = report.ROOT / "bench" / "out"


class RssSampler:
    """Peak resident set size of this process, sampled every `every_s` on a thread."""

    def __init__(self, every_s: float = 0.02) -> None:
        self.proc = psutil.Process()
        self.every_s = every_s
        self.peak = self.start = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.end = self.proc.memory_info().rss


def stream_url(ws_url: str, symbols: list[str]) -> str:
    return ws_url + "/stream?streams=" + "/".join(f"{s.lower()}@trade" for s in symbols)


def bare_websocket_client(ex: ExchangeProcess, symbols: list[str], n: int) -> dict:
    """websocket-client recv_data + orjson.loads + count; seconds from the first trade frame to the n-th."""
    ws = websocket.create_connection(stream_url(ex.ws_url, symbols), skip_utf8_validation=True, suppress_origin=True)
    ws.settimeout(None)
    out: dict = {}

    def loop() -> None:
        count, t0, loads, recv = 0, 0.0, orjson.loads, ws.recv_data
        while count < n:
            opcode, data = recv(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_TEXT:
                if loads(data)["data"]["e"] == "trade":
                    count += 1
                    if count == 1:
                        t0 = time.perf_counter()
        out["seconds"] = time.perf_counter() - t0

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    with RssSampler() as rss:
        out["blast"] = ex.blast(n)
        th.join()
    ws.close()
    out["rss_peak"] = rss.peak - rss.start
    return out


def raw_socket(ex: ExchangeProcess, symbols: list[str], n: int) -> dict:
    """Handshake by websocket-client, then 1 MiB socket reads split into frames by hand, orjson.loads, count."""
    ws = websocket.create_connection(stream_url(ex.ws_url, symbols), skip_utf8_validation=True, suppress_origin=True)
    ws.settimeout(None)
    sock, out = ws.sock, {}

    def loop() -> None:
        count, t0, loads, buf = 0, 0.0, orjson.loads, b""
        while count < n:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buf = buf + chunk if buf else chunk
            pos, size = 0, len(buf)
            while size - pos >= 2:
                ln, head = buf[pos + 1] & 0x7F, 2
                if ln == 126:
                    ln, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
                elif ln == 127:
                    ln, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
                if size - pos < head + ln:
                    break
                if buf[pos] & 0x0F == 1 and loads(buf[pos + head:pos + head + ln])["data"]["e"] == "trade":
                    count += 1
                    if count == 1:
                        t0 = time.perf_counter()
                pos += head + ln
            buf = buf[pos:]
        out["seconds"] = time.perf_counter() - t0

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    out["blast"] = ex.blast(n)
    th.join()
    ws.close()
    return out


def fresh_db(name: str) -> Path:
    path = OUT / name
    OUT.mkdir(parents=True, exist_ok=True)
    for f in (path, path.with_suffix(path.suffix + ".wal")):
        f.unlink(missing_ok=True)
    return path


def check_file(path: Path, n: int) -> tuple[int, int, int]:
    """(rows, distinct (symbol, id), ids missing inside each symbol's id range) of a finished file."""
    con = duckdb.connect(str(path), read_only=True)
    rows, distinct = con.execute("SELECT count(*), count(DISTINCT (symbol, trade_id)) FROM ticks").fetchone()
    missing = con.execute("SELECT coalesce(sum(max(trade_id) - min(trade_id) + 1 - count(DISTINCT trade_id)) OVER (), 0)"
                          " FROM ticks GROUP BY symbol LIMIT 1").fetchone()
    con.close()
    return int(rows), int(distinct), int(missing[0]) if missing else 0


def run_ingestor(ex: ExchangeProcess, symbols: list[str], n: int, flush_ms: int, db: Path,
                 lock_seconds: float = 0.0) -> dict:
    """Blast n trades into a started Ingestor; optionally while another process holds the file read-only."""
    ing = Ingestor(IngestConfig(symbols=symbols, db=db, ws_url=ex.ws_url, rest_url=ex.http_url, flush_ms=flush_ms,
                                stats_every_s=3600))
    ing.check()
    ing.start()
    deadline = time.monotonic() + 15
    while not ing.state.connected.get("spot") and time.monotonic() < deadline:
        time.sleep(0.01)
    warm = ex.blast(2000)["prints"]  # first flush pays one-off imports and schema work; measure steady state
    while ing.writer.stats.rows_inserted < warm and time.monotonic() < deadline + 30:
        time.sleep(0.01)
    holder = None
    if lock_seconds:
        code = ("import duckdb, sys, time\n"
                "while True:\n"
                "    try:\n"
                "        c = duckdb.connect(sys.argv[1], read_only=True); break\n"
                "    except duckdb.IOException:\n"
                "        time.sleep(0.005)  # the writer is flushing; the reader gets in between two flushes\n"
                "print('locked', flush=True); time.sleep(float(sys.argv[2])); c.close(); print('released', flush=True)")
        holder = subprocess.Popen([sys.executable, "-c", code, str(db), str(lock_seconds)], stdout=subprocess.PIPE,
                                  text=True)
        if holder.stdout.readline().strip() != "locked":
            raise RuntimeError("the lock-holding reader could not open the file")
    out: dict = {}
    conn = ing.stream.current
    frames0 = conn.frames
    stats = ing.writer.stats
    stored0 = stats.rows_inserted
    with RssSampler(0.01) as rss:
        blast = {}
        th = threading.Thread(target=lambda: blast.update(ex.blast(n)), daemon=True)
        th.start()
        while conn.frames == frames0:
            time.sleep(0.0005)
        t0 = time.perf_counter()
        t_recv = None
        pending_peak = 0
        while stats.rows_inserted - stored0 < n:
            if t_recv is None and conn.frames - frames0 >= n:
                t_recv = time.perf_counter()
            pending_peak = max(pending_peak, len(ing.buffer))
            if time.perf_counter() - t0 > 600:
                break
            time.sleep(0.002)
        t_end = time.perf_counter()
        th.join()
        if holder is not None:
            holder.stdout.readline()
            holder.wait()
    ing.stop()
    out.update(blast=blast, seconds=t_end - t0, recv_seconds=(t_recv or t_end) - t0, stored=stats.rows_inserted - stored0,
               flushes=stats.flushes, avg_flush_ms=stats.total_flush_ms / max(stats.flushes, 1),
               max_flush_ms=stats.max_flush_ms, max_pending=max(stats.max_pending, pending_peak),
               failures=stats.failures, rss_start=rss.start, rss_peak=rss.peak, rss_end=rss.end)
    out["rows"], out["distinct"], out["missing"] = check_file(db, n + warm)
    out["rows"] -= warm
    out["distinct"] -= warm
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trades", type=int, default=500_000, help="trades per blast (default 500000)")
    ap.add_argument("--symbols", type=int, default=4, help="number of symbols (default 4)")
    ap.add_argument("--flush-ms", type=int, default=250, help="ingestor flush interval (default 250)")
    ap.add_argument("--lock-seconds", type=float, default=10.0, help="reader holds the file this long (0: skip)")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/bench-ingest.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    symbols = ALL_SYMBOLS[:args.symbols]
    n = args.trades

    with ExchangeProcess(symbols, rate=0.0) as ex:
        ex.call("pause")
        print(f"exchange pid {ex.pid} at {ex.http_url}; {n:,} trades over {len(symbols)} symbols per run",
              file=sys.stderr, flush=True)
        bare = bare_websocket_client(ex, symbols, n)
        raw = raw_socket(ex, symbols, n)
        ing = run_ingestor(ex, symbols, n, args.flush_ms, fresh_db("ingest.duckdb"))
        locked = (run_ingestor(ex, symbols, n, args.flush_ms, fresh_db("ingest_locked.duckdb"), args.lock_seconds)
                  if args.lock_seconds > 0 else None)

    bare_rate = n / bare["seconds"]
    tput = report.Table(f"Throughput, {n:,} trades over {len(symbols)} symbols (exchange in its own process)",
                        ["receiver", "seconds", "trades/s", "× bare loop", "stored", "lost"])
    tput.add("baseline: bare websocket-client + orjson (parse, count)", bare["seconds"], bare_rate, 1.0, "–", "–")
    tput.add("reference: raw socket, frames split by hand + orjson", raw["seconds"], n / raw["seconds"],
             bare["seconds"] / raw["seconds"], "–", "–")
    tput.add("ingestor: frames received", ing["recv_seconds"], n / ing["recv_seconds"],
             bare["seconds"] / ing["recv_seconds"], "–", "–")
    tput.add(f"**ingestor end to end into DuckDB (flush {args.flush_ms} ms)**", ing["seconds"], n / ing["seconds"],
             bare["seconds"] / ing["seconds"], ing["rows"], n - ing["distinct"] + ing["missing"])
    details = report.Table("Ingestor run details", ["run", "flushes", "avg flush ms", "max flush ms",
                                                    "max buffered ticks", "peak RSS growth MiB",
                                                    "rows / distinct ids / ids missing"])
    runs = [("blast", ing)] + ([(f"blast while a reader holds the file {args.lock_seconds:g} s", locked)]
                               if locked else [])
    for name, r in runs:
        details.add(name, r["flushes"], r["avg_flush_ms"], r["max_flush_ms"], r["max_pending"],
                    (r["rss_peak"] - r["rss_start"]) / 2**20, f"{r['rows']:,} / {r['distinct']:,} / {r['missing']:,}")
    tables = [tput, details]
    if locked:
        lock = report.Table(f"File locked by a reader for {args.lock_seconds:g} s during the blast",
                            ["ticks", "buffered at peak", "bytes per buffered tick", "seconds to all stored",
                             "writer lock failures", "stored", "lost"])
        per_tick = (locked["rss_peak"] - locked["rss_start"]) / max(locked["max_pending"], 1)
        lock.add(n, locked["max_pending"], per_tick, locked["seconds"], locked["failures"], locked["rows"],
                 n - locked["distinct"] + locked["missing"])
        tables.append(lock)
    for t in tables:
        print(t.text())
        print()
    print(f"exchange: prepare {bare['blast']['prepare_seconds']:.2f} s per blast (before the first frame), "
          f"raw-socket send {raw['blast']['send_seconds']:.2f} s", file=sys.stderr)
    if not args.no_doc:
        cmd = "python bench/ingest.py " + " ".join(argv if argv is not None else sys.argv[1:])
        doc = report.write_doc("ingest", "Ingest benchmark: trades/s from the exchange into DuckDB", cmd.strip(),
                               tables, WHY, BEFORE_AFTER)
        print(f"wrote {doc}", file=sys.stderr)
    return 0


WHY = """
The bare websocket-client loop is not the ceiling it looks like: websocket-client reads every frame with several
small `recv` calls (2-byte header, length, payload), each a syscall that drops and re-takes the GIL, so most of
its time goes to frame plumbing, not to JSON. The raw-socket reference (one 1 MiB read, frames split by slicing,
orjson) shows what Python can do on this machine. The ingestor's receive loop now works that way
(`feed.stream.FrameSplitter`), which is why it beats the bare loop while doing far more per trade: parse and
validate (`feed.binance.parse_frame`), id-gap tracking (`GapTracker.observe`), and one Arrow conversion and one
buffer append per socket read instead of one locked append per trade. The writer thread takes the buffered
Arrow tables every 250 ms and appends them with one anti-join INSERT in a short-lived connection; DuckDB runs
without the GIL, so flushing overlaps receiving. Per trade, the receive thread still spends roughly: orjson
+ validation 40 %, gap tracking 20 %, frame split 10 %, Arrow conversion 10 %.

Memory while the file is locked: buffered ticks are kept as Arrow tables (about 60 bytes of column data per
tick) rather than row tuples of Python objects, are converted once instead of on every retry, and no per-tick
objects pile up for the garbage collector. RSS growth per buffered tick went from ~750-800 B to ~350-410 B; it
includes the blast's transient objects and memory the allocators keep, so it is an upper bound. Memory grows
with rate x lock time and no further: the first flush after the reader lets go empties the buffer, and nothing is
dropped while waiting (the design's rule: the ingestor never drops buffered ticks).
"""

BEFORE_AFTER = """
## Before / after (same machine, same bench, runs interleaved)

Before = commit c57ab0a (websocket-client `recv_data` per frame, one locked buffer append per trade, row tuples
converted to Arrow on every flush attempt, status hook via `executemany`); after = this branch.

| 500k trades, 4 symbols | bare loop trades/s | ingestor end to end trades/s | × bare loop | reader lock 10 s: RSS per buffered tick | lost |
|---|---:|---:|---:|---:|---:|
| before, run 1 | 78,681 | 32,608 | 0.41 | 748 B | 0 |
| before, run 2 | 72,780 | 27,135 | 0.37 | 794 B | 0 |
| after, run 1 | 75,287 | 103,869 | 1.38 | (lock missed, see note) | 0 |
| after, run 2 | 57,198 | 90,931 | 1.59 | 347 B | 0 |
| after, run 3 (tables above) | 74,890 | 115,542 | 1.54 | 414 B | 0 |

The machine is shared with other work (load average 1-7 during these runs); compare rows within a run. In
"after, run 1" the lock-holding reader could not open the file while a flush was in progress and gave up (the
bench's reader now retries until it holds the file).
"""

if __name__ == "__main__":
    sys.exit(main())
