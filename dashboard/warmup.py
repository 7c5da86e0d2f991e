"""Import the analytics stack in the background on a fresh server, while the first run waits on the tick file.

quantlib imports statsmodels (and with it scipy.stats, ~0.7 s) only when a test first runs; on a fresh server
that would land on the first Pairs render. `start()` is called at the top of the entrypoint, after every page
module's own imports, so this thread only takes module locks the script thread is not holding.
"""
from __future__ import annotations

import importlib
import logging
import threading

log = logging.getLogger(__name__)

MODULES = ("statsmodels.tsa.adfvalues", "statsmodels.robust.norms", "statsmodels.robust.robust_linear_model")
_lock = threading.Lock()
_thread: threading.Thread | None = None


def _run() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the real import reports it where it is needed
            log.warning("warm-up import of %s failed: %s", name, exc)
            return


def start() -> None:
    """Start the warm-up once per process (no-op afterwards)."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_run, name="tickdesk-warmup", daemon=True)
            _thread.start()


def join(timeout: float | None = None) -> None:
    """Wait for the warm-up to finish (benchmarks measure pages after it, as on a server that has been up)."""
    if _thread is not None:
        _thread.join(timeout)
