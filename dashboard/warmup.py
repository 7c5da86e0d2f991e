"""Import the analytics stack in the background on a fresh server, before the first page needs it.

quantlib imports statsmodels (and with it scipy.stats, ~0.7 s) only when a test first runs; on a fresh server
that would land on the first Pairs render. `start()` is called at the top of the entrypoint, after every page
module's own imports, so this thread only takes module locks the script thread is not holding.

`python -m dashboard.launch` (make run / make demo) starts it earlier, while the server starts and the browser
loads the frontend, with `LAUNCH_MODULES`: third-party packages only. They never import tickdesk modules, so a
first run importing dashboard/quantlib at the same time can wait on this thread but never deadlock with it.
"""
from __future__ import annotations

import importlib
import logging
import threading

log = logging.getLogger(__name__)

MODULES = ("statsmodels.tsa.adfvalues", "statsmodels.robust.norms", "statsmodels.robust.robust_linear_model")
# what the entrypoint and pages import, heaviest first (~1 s on a fresh process), then MODULES
LAUNCH_MODULES = ("pandas", "pyarrow.compute", "duckdb", "plotly.io", "scipy.linalg", "requests", "orjson",
                  "statsmodels.tsa.coint_tables") + MODULES
_lock = threading.Lock()
_thread: threading.Thread | None = None


def _run(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the real import reports it where it is needed
            log.warning("warm-up import of %s failed: %s", name, exc)
            return


def start(modules: tuple[str, ...] = MODULES) -> None:
    """Start the warm-up once per process (no-op afterwards)."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_run, args=(modules,), name="tickdesk-warmup", daemon=True)
            _thread.start()
