"""Short-lived, lock-safe DuckDB connections.

DuckDB lets one process write a file, and a read-only open fails while a writer holds it. Nobody keeps the
file open: writers open-insert-close, readers open read-only per query batch; both retry on a lock conflict.

Inside one process DuckDB shares one database instance per file and refuses a connection whose configuration
(read-only or read-write) differs from one still open ("different configuration"). Every connection this module
opens therefore first passes a per-file gate (`_FileGate`): connections of one mode share it, the other mode waits
until they close, and a waiting mode keeps new arrivals of the open mode out, so a write from the app is never
starved by the read queries of its other sessions (and the reverse).

Connections do not start a DuckDB instance each time (~20 ms of CPU, whatever the file, paid by every flush and
every read): one in-memory instance per file, mode and process stays up (`_Host`) and ATTACHes the file while
connections of its mode are open, DETACHing it (a writer's checkpoint; the lock released) when the last one closes.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from core.paths import default_db_path
from tickstore.schema import ensure_schema
from tickstore.views import define_read_views

log = logging.getLogger(__name__)

Connection = duckdb.DuckDBPyConnection   # what hooks and helpers outside tickstore receive (never import duckdb)
QueryError = duckdb.Error                # what a statement on an open Connection may raise


class StoreError(Exception):
    """The tick file cannot be used; the message says why and what is expected."""


class StoreBusy(StoreError):
    """Another process (or this process's other connections) held the file for longer than the retry budget."""


class StoreMissing(StoreError):
    """The tick file does not exist (yet)."""


class StoreDamaged(StoreError):
    """The tick file is corrupt (a block fails its checksum, the file is truncated)."""


class StoreFull(StoreError):
    """The disk holding the tick file (or its archive) is full."""


def store_failure(exc: BaseException, path: str | os.PathLike) -> StoreError | None:
    """A damaged file or a full disk as a one-line StoreError naming `path` and what to do, else None."""
    if isinstance(exc, StoreError):
        return exc
    msg = str(exc)
    low = msg.lower()
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "no space left" in low or "disk is full" in low:
        return StoreFull(f"disk full while writing {path} ({msg.splitlines()[0][:200]}); free some space and run "
                         "again (what was written before is intact)")
    if isinstance(exc, duckdb.Error) and ("corrupt" in low or "checksum" in low or "truncated" in low
                                          or "invalid database" in low or "not a valid duckdb" in low
                                          or "could not read enough bytes" in low):
        return StoreDamaged(f"tick file {path} is damaged ({msg.splitlines()[0][:200]}); restore it from a backup "
                            "or move it aside (nothing was written to it)")
    return None


def is_lock_error(exc: BaseException) -> bool:
    """A conflict that goes away when the other holder closes: another process's file lock, or a connection of
    this process opened outside this module with the other configuration (the gate orders this module's own)."""
    if not isinstance(exc, duckdb.Error):
        return False
    msg = str(exc).lower()
    if isinstance(exc, duckdb.ConnectionException) and "different configuration" in msg:
        return True
    if store_failure(exc, "") is not None:  # "checksum ... in block at location": damage, not a lock
        return False
    return _LOCK_RE.search(msg) is not None


# "unique file handle conflict": the file is attached by another instance of this process (one opened outside
# this module, e.g. by a test, while this module's write host holds it, or the reverse)
_LOCK_RE = re.compile(r"\block\b|conflicting|resource temporarily|file handle conflict")


class LockStats:
    """Process-wide counters of lock conflicts (read by the ingestor's log lines and the benchmarks)."""

    retries = 0
    waited_s = 0.0


class _FileGate:
    """One DuckDB configuration per file at a time inside this process (see the module docstring).

    A fair readers-writer gate over two modes, 'ro' and 'rw': any number of connections of the open mode; when
    the last one closes and the other mode has waiters, exactly those waiters are admitted next (`_admit`), so
    neither a stream of reads nor a stream of writes can starve the other. Re-entrant per thread for the mode it
    holds; asking for the other mode while holding one is a bug and fails at once instead of waiting for itself.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._mode: str | None = None        # 'ro' | 'rw' while connections are open
        self._holders = 0
        self._waiting = {"ro": 0, "rw": 0}
        self._admit = {"ro": 0, "rw": 0}     # waiters of a mode let in ahead of newcomers (their turn)
        self._mine = threading.local()

    def _may_enter(self, mode: str) -> bool:
        other = "rw" if mode == "ro" else "ro"
        if self._mode not in (None, mode):
            return False
        if self._admit[mode]:
            self._admit[mode] -= 1
            return True
        return not self._waiting[other] and not self._admit[other]

    def acquire(self, mode: str, deadline: float) -> bool:
        """Enter in `mode`; False when `deadline` (time.monotonic) passes first."""
        held = getattr(self._mine, "held", None)
        if held is not None:
            if held[0] != mode:
                raise StoreError(f"tick file {self.name}: this thread already holds a {held[0]} connection and asked "
                                 f"for a {mode} one; close the first before opening the second")
            with self._cond:
                self._holders += 1
            self._mine.held = (mode, held[1] + 1)
            return True
        with self._cond:
            self._waiting[mode] += 1
            try:
                while not self._may_enter(mode):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._admit[mode] = min(self._admit[mode], self._waiting[mode] - 1)
                        self._cond.notify_all()
                        return False
                    self._cond.wait(min(left, 60.0))
                self._mode = mode
                self._holders += 1
            finally:
                self._waiting[mode] -= 1
        self._mine.held = (mode, 1)
        return True

    def release(self) -> None:
        mode, depth = self._mine.held
        self._mine.held = (mode, depth - 1) if depth > 1 else None
        other = "rw" if mode == "ro" else "ro"
        with self._cond:
            self._holders -= 1
            if self._holders == 0:
                self._mode = None
                self._admit[other] = self._waiting[other]
                self._cond.notify_all()


_gates: dict[str, _FileGate] = {}
_gates_lock = threading.Lock()


def _gate(path: Path) -> _FileGate:
    key = str(path.resolve())
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = _FileGate(str(path))
        return gate


class _Host:
    """The in-memory DuckDB instance through which this process reads or writes one file (module docstring).

    The first connection ATTACHes the file (taking its lock: shared for reads, exclusive for writes), every one
    gets its own cursor with the file as its default database, and the last one to close DETACHes it: to other
    processes the file is held exactly as long as with connections of their own, and the instance's start-up is
    paid once per process. The gate keeps the two modes of a file from being attached at once."""

    ALIAS = "tickfile"
    # an instance that attached the file this often is closed and a new one started: a few kB stay behind per
    # attach of a written file (+35 MB over 4,000 small flushes), a fresh instance costs ~20 ms every ~2 min
    RENEW_AFTER = 500

    def __init__(self, path: Path, read_only: bool) -> None:
        self.path, self.read_only = path, read_only
        self._lock = threading.Lock()
        self._inst: duckdb.DuckDBPyConnection | None = None
        self._users = 0
        self._attaches = 0

    def open(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._users == 0:
                if self._inst is None:
                    # writers append small batches: one thread (a thread pool costs ~10 ms and competes with the app)
                    self._inst = duckdb.connect(":memory:", config={} if self.read_only else {"threads": 1})
                self._inst.execute(f"ATTACH $path AS {self.ALIAS}{' (READ_ONLY)' if self.read_only else ''}",
                                   {"path": str(self.path)})
                self._attaches += 1
            self._users += 1
            inst = self._inst
        try:
            con = inst.cursor()
            con.execute(f"USE {self.ALIAS}")
            return con
        except BaseException:
            self.close(None)
            raise

    def close(self, con: duckdb.DuckDBPyConnection | None) -> None:
        try:
            if con is not None:
                con.close()
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    try:
                        self._inst.execute(f"DETACH {self.ALIAS}")  # a writer's checkpoint; releases the file
                    except BaseException:
                        self._renew()  # start afresh next time; closing releases the file
                        raise
                    if self._attaches >= self.RENEW_AFTER:
                        self._renew()

    def _renew(self) -> None:
        inst, self._inst, self._attaches = self._inst, None, 0
        with contextlib.suppress(duckdb.Error):
            inst.close()


_hosts: dict[tuple[str, bool], _Host] = {}


def _host(path: Path, read_only: bool) -> _Host:
    key = (str(path.resolve()), read_only)
    with _gates_lock:
        host = _hosts.get(key)
        if host is None:
            host = _hosts[key] = _Host(path, read_only)
        return host


@contextlib.contextmanager
def _connection(path: Path, read_only: bool, budget_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open (gate, then DuckDB), retrying lock conflicts with jittered backoff until `budget_s`; close on exit."""
    gate = _gate(path)
    mode = "ro" if read_only else "rw"
    deadline = time.monotonic() + budget_s
    delay = 0.005
    while True:
        if not gate.acquire(mode, deadline):
            raise StoreBusy(f"tick file {path} stayed busy with other {'writes' if read_only else 'reads'} of this "
                            f"process (waited {budget_s:.1f}s)")
        try:
            con = _host(path, read_only).open()
            break
        except duckdb.Error as exc:
            gate.release()
            if not is_lock_error(exc):
                if read_only and not path.exists():
                    raise StoreMissing(f"tick file {path} does not exist yet; start the ingestor to create it") from exc
                raise store_failure(exc, path) or StoreError(f"cannot open tick file {path}: {exc}") from exc
            now = time.monotonic()
            if now >= deadline:
                raise StoreBusy(f"tick file {path} is locked by another process (waited {budget_s:.1f}s)") from exc
            sleep = min(delay * (1 + random.random()), deadline - now)
            LockStats.retries += 1
            LockStats.waited_s += sleep
            time.sleep(sleep)
            delay = min(delay * 2, 0.1)
        except BaseException:
            gate.release()
            raise
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")  # else a statement over 2 s draws a bar on stdout
        yield con
    except (duckdb.Error, OSError) as exc:  # damage or a full disk met by the caller's statements: one clear error
        failure = store_failure(exc, path)
        if failure is None:
            raise
        raise failure from exc
    finally:
        try:
            _host(path, read_only).close(con)
        finally:
            gate.release()


@contextlib.contextmanager
def read_connection(path: str | os.PathLike | None = None, budget_s: float = 2.0,
                    views: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, retried on lock conflicts for up to `budget_s`; closed on exit. `views=False`: the
    file's own tables only (no `ticks_all` and friends, which need the tick tables)."""
    path = Path(path) if path is not None else default_db_path()
    if not path.exists():
        raise StoreMissing(f"tick file {path} does not exist yet; start the ingestor (make run / make demo) to create it")
    with _connection(path, read_only=True, budget_s=budget_s) as con:
        if views:
            define_read_views(con)
        yield con


@contextlib.contextmanager
def write_connection(path: str | os.PathLike, budget_s: float = float("inf")) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection, retried on lock conflicts; closed on exit."""
    with _connection(Path(path), read_only=False, budget_s=budget_s) as con:
        yield con


def check_creatable(path: str | os.PathLike) -> Path:
    """Raise StoreError (the reason `init_db` would give) unless a new file `path` could be created; creates
    nothing, so a start refused later for another reason leaves no file or directory behind."""
    path = Path(path)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise StoreError(f"cannot create directory {path.parent}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"directory {parent} is not writable")
    return path


def init_db(path: str | os.PathLike) -> Path:
    """Create the file and schema, or raise StoreError with a clear reason (e.g. unwritable directory)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create directory {path.parent}: {exc.strerror}") from exc
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(f"tick file {path} is not writable")
    if not os.access(path.parent, os.W_OK):
        raise StoreError(f"directory {path.parent} is not writable")
    with write_connection(path, budget_s=30.0) as con:
        ensure_schema(con)
    return path
