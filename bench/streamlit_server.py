"""Shared by the browser benches: start a real `streamlit run` on 127.0.0.1 and wait until it answers.

    with streamlit_server(ROOT / "streamlit_app.py", env=env, log=path) as srv:
        page.goto(srv.base)
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app_rss import free_port, healthy, stop  # noqa: E402  (bench/app_rss.py)
from report import ROOT  # noqa: E402  (bench/report.py)


@dataclass(frozen=True)
class Server:
    """A running `streamlit run`: its port, base URL and process."""

    port: int
    base: str
    proc: subprocess.Popen

    def summary(self) -> str:
        return f"streamlit pid {self.proc.pid} on {self.base}"


def wait_health(port: int, procs: list[subprocess.Popen], timeout: float = 60.0, every: float = 0.05) -> None:
    """Poll /_stcore/health every `every` s until the server answers; fail at once if one of `procs` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if healthy(port):
                return
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a process exited during start-up")
        time.sleep(every)
    raise RuntimeError(f"streamlit did not answer on port {port} within {timeout:.0f} s")


@contextlib.contextmanager
def streamlit_server(script: Path | str, env: dict | None = None, log: Path | None = None, timeout: float = 60.0,
                     extra: tuple[str, ...] = ()) -> Iterator[Server]:
    """`streamlit run script` (headless, 127.0.0.1, a free port) until the block ends; output to `log`."""
    port = free_port()
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false", *extra],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_health(port, [proc], timeout)
        yield Server(port, f"http://127.0.0.1:{port}", proc)
    finally:
        stop(proc)
        if log:
            out.close()
