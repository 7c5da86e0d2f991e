"""What the browser tests share: the real-server and Chromium harness (bench/streamlit_server.py, one definition
for tests and benches), where screenshots go, and the waits and checks made on a Streamlit page in Chromium.

The fixtures `chromium`, `browser_page` and `demo_stack` are in conftest.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.streamlit_server import (CHROMIUM, CHROMIUM_ARGS, ROOT, Server, chromium_available, free_port,  # noqa: F401
                                    log_tails, stop, streamlit_server)

SHOTS = ROOT / "artifacts" / "screenshots"
needs_chromium = pytest.mark.skipif(not chromium_available(),
                                    reason="Debian chromium is not installed (.ci/run installs it)")


def app_env(db: Path) -> dict:
    """The environment of a process reading or writing the tick file `db` (unbuffered: logs are read live)."""
    return {**os.environ, "TICKDESK_DB": str(db), "PYTHONUNBUFFERED": "1"}


def spawn(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    """`python *args` in the repository, stdout and stderr to `log`."""
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def new_page(browser, width: int, height: int, **kwargs):
    """A page in a fresh context whose uncaught script errors collect in `page.errors` (console errors and
    warnings in `page.console`)."""
    page = browser.new_page(viewport={"width": width, "height": height}, **kwargs)
    page.errors = []
    page.console = []   # console errors and warnings (a failing test's message can show them)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda m: page.console.append(f"{m.type}: {m.text[:300]}") if m.type in ("error", "warning")
            else None)
    return page


def wait_for_charts(page, n: int, timeout_s: float) -> None:
    """Wait until `n` Plotly graphs have drawn traces (live data may still be arriving)."""
    page.wait_for_function(
        """(n) => { const els = Array.from(document.querySelectorAll('.js-plotly-plot'));
                    return els.filter(e => e._fullData && e._fullData.length > 0).length >= n; }""",
        arg=n, timeout=timeout_s * 1000, polling=250)


def settle(page) -> None:
    """Let lazily loaded widgets finish (no skeleton placeholders) before a screenshot."""
    try:
        page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stSkeleton\"]').length === 0",
                               timeout=10_000, polling=200)
    except Exception:  # a screenshot with a placeholder is still a useful artifact
        pass
    page.wait_for_timeout(500)


def assert_clean(page, name: str) -> None:
    """No Streamlit exception element on the page."""
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, f"{name}: " + "\n".join(e.inner_text()[:2000] for e in exc.all())
