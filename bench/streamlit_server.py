"""A real `streamlit run` on 127.0.0.1 and the headless Chromium that drives it, shared by the browser benches
(`from streamlit_server import ...`) and the browser tests (`from bench.streamlit_server import ...`): stdlib only
and no sibling imports, so it loads both ways.

    with streamlit_server(ROOT / "streamlit_app.py", env=env, log=path) as srv:
        page.goto(srv.base)
"""
from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's; never `playwright install`
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() and shutil.which("chromium") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    """True once the server on `port` answers its health check; OSError while nothing listens."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
        return r.status == 200 and r.read().strip() == b"ok"


def stop(proc: subprocess.Popen, timeout: float = 20) -> int | None:
    """SIGTERM, then SIGKILL after `timeout` s; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def log_tails(logs: Sequence[Path], chars: int = 2000) -> str:
    """The last `chars` characters of each log that exists, headed by its name."""
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in logs if Path(p).exists())


@dataclass(frozen=True)
class Server:
    """A running `streamlit run`: its port, base URL and process."""

    port: int
    base: str
    proc: subprocess.Popen

    def summary(self) -> str:
        return f"streamlit pid {self.proc.pid} on {self.base}"


def wait_health(port: int, procs: Sequence[subprocess.Popen], timeout: float = 60.0, every: float = 0.05,
                ready: Callable[[], bool] | None = None, logs: Sequence[Path] = ()) -> None:
    """Poll /_stcore/health every `every` s until the server answers (and `ready()` holds, if given); fail at once,
    with the tails of `logs`, if one of `procs` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if healthy(port) and (ready is None or ready()):
                return
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a process exited during start-up\n" + log_tails(logs))
        time.sleep(every)
    raise RuntimeError(f"streamlit did not answer on port {port} within {timeout:.0f} s\n" + log_tails(logs))


@contextlib.contextmanager
def streamlit_server(script: Path | str = ROOT / "streamlit_app.py", env: dict | None = None, log: Path | None = None,
                     timeout: float = 60.0, extra: tuple[str, ...] = (), watch: Sequence[subprocess.Popen] = (),
                     ready: Callable[[], bool] | None = None, logs: Sequence[Path] = ()) -> Iterator[Server]:
    """`streamlit run script` (headless, 127.0.0.1, a free port) until the block ends; output to `log`.

    Start-up fails (RuntimeError with the tails of `log` and `logs`) if the server or one of the `watch` processes
    (an ingestor, an exchange) exits first, or nothing answers within `timeout` s; `ready` is an extra condition.
    """
    port = free_port()
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", *extra],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_health(port, [proc, *watch], timeout, ready=ready, logs=[*([log] if log else []), *logs])
        yield Server(port, f"http://127.0.0.1:{port}", proc)
    finally:
        stop(proc)
        if log:
            out.close()
