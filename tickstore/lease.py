"""One ingestor per (file, market): a lease row with a heartbeat, kept in the tick file itself.

Two ingestors on one file and market would store each tick once (ids dedupe) but fire every alert twice and
overwrite each other's status rows, so the second is refused. The holder refreshes `heartbeat_at` after its
flushes and deletes the row when it stops. A row left by a process that died (kill -9) is taken over when that
process no longer exists (same host) or its heartbeat is older than LEASE_TTL_S (another host).
"""
from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import duckdb

LEASE_TTL_S = 60.0

_DDL = """CREATE TABLE IF NOT EXISTS ingest_lease (market VARCHAR PRIMARY KEY, owner VARCHAR, host VARCHAR,
          pid BIGINT, started_at TIMESTAMPTZ, heartbeat_at TIMESTAMPTZ)"""


@dataclass(frozen=True)
class Lease:
    """Who writes a market into the file."""

    market: str
    owner: str
    host: str
    pid: int
    started_at: dt.datetime
    heartbeat_at: dt.datetime

    def summary(self, now: dt.datetime | None = None) -> str:
        now = now or dt.datetime.now(dt.UTC)
        return (f"pid {self.pid} on {self.host}, started {self.started_at:%Y-%m-%d %H:%M:%S}Z, last heartbeat "
                f"{(now - self.heartbeat_at).total_seconds():.0f} s ago")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(con: duckdb.DuckDBPyConnection, market: str) -> Lease | None:
    row = con.execute("SELECT market, owner, host, pid, started_at, heartbeat_at FROM ingest_lease WHERE market = ?",
                      [market]).fetchone()
    return Lease(*row) if row else None


def acquire(con: duckdb.DuckDBPyConnection, market: str, owner: str, now: dt.datetime | None = None,
            alive: Callable[[int], bool] = pid_alive) -> Lease | None:
    """Take the lease of `market` for `owner`; returns the live lease of another ingestor instead (nothing taken)."""
    now = now or dt.datetime.now(dt.UTC)
    host, pid = socket.gethostname(), os.getpid()
    con.execute(_DDL)
    held = _holder(con, market)
    if held is not None and held.owner != owner:
        if held.host == host:
            live = held.pid != pid and alive(held.pid)
        else:
            live = (now - held.heartbeat_at).total_seconds() < LEASE_TTL_S
        if live:
            return held
    con.execute("INSERT OR REPLACE INTO ingest_lease VALUES (?, ?, ?, ?, ?, ?)", [market, owner, host, pid, now, now])
    return None


def heartbeat(con: duckdb.DuckDBPyConnection, market: str, owner: str, now: dt.datetime | None = None) -> bool:
    """Refresh the lease; False when `owner` no longer holds it (taken over after looking dead)."""
    con.execute(_DDL)
    n = con.execute("UPDATE ingest_lease SET heartbeat_at = ? WHERE market = ? AND owner = ? RETURNING 1",
                    [now or dt.datetime.now(dt.UTC), market, owner]).fetchall()
    return bool(n)


def release(con: duckdb.DuckDBPyConnection, market: str, owner: str) -> None:
    con.execute(_DDL)
    con.execute("DELETE FROM ingest_lease WHERE market = ? AND owner = ?", [market, owner])
