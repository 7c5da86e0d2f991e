"""Shared fixtures: a real DuckDB tick file filled with a seeded synthetic market.

`tick_db` is a fresh copy per test of a file holding ~3 h of ticks for a cointegrated BTCUSDT / ETHUSDT pair
(spot), ending a few seconds before the session started, plus one `ingest_status` row per symbol.
`empty_tick_db` has the schema and no rows. `make_tick_db(path, ...)` builds custom files;
`ou_pair(...)` makes bars of a cointegrated pair for the quantlib tests. `app` runs the app in
Streamlit's AppTest. For the browser tests (helpers in tests/browser.py): `chromium`, `browser_page` and
`demo_stack` (the demo ingestor and a real `streamlit run`).
"""
from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tickstore.connection import init_db, write_connection
from tickstore.writer import TickBuffer, TickWriter


@pytest.hookimpl(trylast=True)  # after `-m` has deselected
def pytest_collection_modifyitems(config, items):
    """Longest files first. `make test` hands whole files to two xdist workers in the order given here
    (--no-loadscope-reorder: xdist's own order, by number of tests, puts the few but long browser and fault files
    last, and one worker then runs them alone at the end). A file's cost is a rough sum of its tests' seconds."""
    def cost(item) -> float:
        if "chromium" in item.fixturenames:  # a browser test (and its module's real server)
            return 45.0
        return 10.0 if item.get_closest_marker("slow") else 0.5

    per_file: dict[Path, float] = {}
    for item in items:
        per_file[item.path] = per_file.get(item.path, 0.0) + cost(item)
    items.sort(key=lambda item: -per_file[item.path])  # stable: each file keeps its tests' order


@dataclass(frozen=True)
class SyntheticMarket:
    """What `make_tick_db` wrote: handy for assertions."""

    path: Path
    market: str
    symbols: tuple[str, ...]
    start: dt.datetime
    end: dt.datetime
    ticks_per_symbol: dict[str, int]
    beta: float


def synthetic_pair_ticks(start_us: int, hours: float, rate_per_s: float, seed: int, beta: float = 1.2,
                         market: str = "spot", x_symbol: str = "BTCUSDT", y_symbol: str = "ETHUSDT",
                         x_price: float = 60_000.0, y_price: float = 3_000.0) -> list[tuple]:
    """Rows `(market, symbol, trade_id, ts_us, price, qty, is_buyer_maker, recv_us, source)` for a cointegrated pair.

    log(x) is a random walk; log(y) = c + beta*log(x) + OU noise (half-life ~ 10 min), sampled at each tick.
    """
    rng = np.random.default_rng(seed)
    span_us = int(hours * 3600e6)
    rows: list[tuple] = []
    # One common 1-second latent path, then each symbol's ticks sample it at random times.
    n_sec = int(hours * 3600) + 1
    lx = np.log(x_price) + np.cumsum(rng.normal(0, 2e-4, n_sec))
    phi = np.exp(-np.log(2) / 600.0)
    ou = np.zeros(n_sec)
    eps = rng.normal(0, 3e-4, n_sec)
    for i in range(1, n_sec):
        ou[i] = phi * ou[i - 1] + eps[i]
    c = np.log(y_price) - beta * np.log(x_price)
    ly = c + beta * lx + ou
    for symbol, path, qty_scale in ((x_symbol, lx, 0.05), (y_symbol, ly, 0.8)):
        n = int(span_us / 1e6 * rate_per_s)
        ts = np.sort(rng.integers(start_us, start_us + span_us, n))
        sec = ((ts - start_us) // 1_000_000).clip(0, n_sec - 1)
        price = np.round(np.exp(path[sec] + rng.normal(0, 2e-5, n)), 2)
        qty = np.round(rng.lognormal(0, 1, n) * qty_scale, 5) + 1e-5
        maker = rng.random(n) < 0.5
        base_id = 1_000_000 if symbol == x_symbol else 500_000
        rows.extend((market, symbol, base_id + i, int(t), float(p), float(q), bool(m), int(t) + 50_000, "ws")
                    for i, (t, p, q, m) in enumerate(zip(ts, price, qty, maker)))
    return rows


def ou_pair(n: int = 3000, seed: int = 0, phi: float = 0.9, drift: float = 0.0, start: str = "2024-01-01"
            ) -> tuple[pd.Series, pd.Series]:
    """Seeded 1-minute closes (Y, X) of a cointegrated pair: X a geometric random walk around 100, Y = 20 + beta*X
    + AR(1) noise with coefficient `phi`; the hedge drifts (beta = 1.5 + drift * t / n) when `drift` is set."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    x = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    e = rng.normal(0, 0.05, n)
    s = np.zeros(n)
    for t in range(1, n):
        s[t] = phi * s[t - 1] + e[t]
    beta = 1.5 + drift * np.arange(n) / n
    return pd.Series(20 + beta * x + s, idx, name="Y"), pd.Series(x, idx, name="X")


def make_tick_db(path: Path, hours: float = 3.0, rate_per_s: float = 1.5, seed: int = 7,
                 end: dt.datetime | None = None, with_status: bool = True) -> SyntheticMarket:
    """Create `path` with the tickdesk schema and a synthetic BTCUSDT/ETHUSDT pair ending at `end` (default now)."""
    end = end or dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=2)
    start = end - dt.timedelta(hours=hours)
    start_us = int(start.timestamp() * 1e6)
    init_db(path)
    rows = synthetic_pair_ticks(start_us, hours, rate_per_s, seed)
    buf = TickBuffer()
    buf.extend(rows)
    writer = TickWriter(path, buf)
    writer.flush_once()
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[1]] = counts.get(r[1], 0) + 1
    if with_status:
        with write_connection(path) as con:
            for symbol in counts:
                con.execute(
                    """INSERT INTO ingest_status(market, symbol, connected, last_trade_id, last_trade_ts, last_recv_ts,
                       ticks_total, ticks_per_s, reconnects, gaps_found, gaps_filled, gaps_unrecoverable,
                       trades_backfilled, malformed, duplicates, updated_at) VALUES ('spot', $s, TRUE,
                         (SELECT max(trade_id) FROM ticks WHERE symbol = $s),
                         (SELECT max(ts) FROM ticks WHERE symbol = $s), $now, $n, 1.5, 2, 1, 1, 0, 120, 0, 0, $now)""",
                    {"s": symbol, "n": counts[symbol], "now": end})
                con.execute("""INSERT INTO ingest_events(ts, market, symbol, kind, first_id, last_id, count, detail)
                               VALUES ($now, 'spot', $s, 'gap_filled', 10, 20, 11, 'backfilled over REST')""",
                            {"s": symbol, "now": end})
    return SyntheticMarket(path, "spot", tuple(sorted(counts)), start, end, counts, 1.2)


@pytest.fixture(scope="session")
def _tick_db_template(tmp_path_factory) -> SyntheticMarket:
    return make_tick_db(tmp_path_factory.mktemp("tickdb") / "template.duckdb")


@pytest.fixture
def tick_market(_tick_db_template, tmp_path) -> SyntheticMarket:
    """A private copy of the synthetic 3 h BTCUSDT/ETHUSDT file, with what was written."""
    path = tmp_path / "ticks.duckdb"
    shutil.copy(_tick_db_template.path, path)
    return SyntheticMarket(path, *[getattr(_tick_db_template, f) for f in
                                   ("market", "symbols", "start", "end", "ticks_per_symbol", "beta")])


@pytest.fixture
def tick_db(tick_market) -> Path:
    """Path of a private copy of the synthetic 3 h BTCUSDT/ETHUSDT tick file."""
    return tick_market.path


@pytest.fixture
def empty_tick_db(tmp_path) -> Path:
    """Path of a tick file with the schema and no rows."""
    path = tmp_path / "empty.duckdb"
    init_db(path)
    return path


ROOT = Path(__file__).resolve().parent.parent


def share_apptest_caches() -> None:
    """Give every AppTest of this process what a real server computes once per process (its Runtime) rather than
    once per session, and AppTest recomputes for every new test or run:
    - the scan of every installed distribution's metadata for Streamlit v2 components (~0.15 s of CPU per new
      AppTest); the installed packages do not change during a run;
    - the compiled page scripts (Streamlit's magic rewrite of the syntax tree, then `compile`, on every run, since
      each run gets a fresh ScriptCache), keyed by path and source text, so an edited script compiles afresh.
    Each AppTest still gets its own component registry, session state and caches."""
    import os

    from streamlit import config
    from streamlit.components.v2 import manifest_scanner
    from streamlit.runtime.scriptrunner import script_cache
    from streamlit.source_util import open_python_file

    if getattr(manifest_scanner.scan_component_manifests, "shared", False):
        return
    found = manifest_scanner.scan_component_manifests()

    def scan_component_manifests(max_workers: int | None = None):
        return list(found)

    compiled: dict[tuple[str, str, bool], object] = {}
    get_bytecode = script_cache.ScriptCache.get_bytecode

    def shared_bytecode(self, script_path: str):
        path = os.path.abspath(script_path)
        with open_python_file(path) as f:
            key = (path, f.read(), bool(config.get_option("runner.magicEnabled")))
        if key not in compiled:
            compiled[key] = get_bytecode(self, script_path)
        return compiled[key]

    scan_component_manifests.shared = True
    manifest_scanner.scan_component_manifests = scan_component_manifests
    script_cache.ScriptCache.get_bytecode = shared_bytecode


@pytest.fixture
def app(monkeypatch):
    """Factory for an `AppTest` of streamlit_app.py reading `db`: `app(db, page="app_pages/pairs.py", query={...})`.

    Runs the entrypoint once, on `page` if given (as a bookmark to it opens a fresh session), else on Market.
    """
    from streamlit.testing.v1 import AppTest

    share_apptest_caches()

    def make(db: Path, page: str | None = None, query: dict | None = None, timeout: float = 60):
        monkeypatch.setenv("TICKDESK_DB", str(db))
        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=timeout)
        if query:
            at.query_params = dict(query)
        if page:  # a bookmark to the page: its first run is the session's first (as a fresh tab opening its URL)
            at.switch_page(page)
        at.run()
        return at

    return make


def plotly_specs(at) -> list[dict]:
    """The Plotly figures an AppTest run drew (st.plotly_chart or the live-chart component), as figure dicts
    (`data` traces with decoded arrays, `layout`), in page order."""
    import json

    specs = [el.proto.spec for el in at.get("plotly_chart")]
    specs += [spec for el in at.get("bidi_component") if el.proto.component_name == "tickdesk_live_plotly"
              for spec in [json.loads(el.proto.json)["spec"]] if spec is not None]  # None: the plotly.js preload
    return [_decode_typed_arrays(json.loads(spec)) for spec in specs]


def _decode_typed_arrays(obj):
    """Plotly JSON stores numeric arrays as {"dtype", "bdata"(base64)[, "shape"]}; turn them back into lists."""
    import base64

    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            if "shape" in obj:
                arr = arr.reshape([int(n) for n in str(obj["shape"]).split(",")])
            return arr.tolist()
        return {k: _decode_typed_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode_typed_arrays(v) for v in obj]
    return obj


def table_value(element, columns: dict):
    """An AppTest st.table's frame with its display labels mapped back to field names (`columns`: the
    st.column_config mapping the page labelled it with, e.g. dashboard.tables.STATS_COLUMNS)."""
    return element.value.rename(columns={cfg["label"]: name for name, cfg in columns.items()})


def page_text(at) -> str:
    """Every text element of an AppTest run (markdown, captions, info/warning/error/success boxes), joined."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success"):
        parts.extend(str(el.value) for el in getattr(at, kind))
    return "\n".join(parts)


def assert_no_exception(at) -> None:
    assert not at.exception, "\n".join(str(e.value) + "\n" + "\n".join(e.stack_trace) for e in at.exception)


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium (Debian's, through playwright) shared by a module's tests; each opens its own pages."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser_page(chromium):
    """One 1600x2000 page kept across a module's tests; uncaught script errors collect in `page.errors`."""
    from tests.browser import new_page

    page = new_page(chromium, 1600, 2000)
    yield page
    page.close()


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory):
    """`ingestor.py --demo` (four majors) and a real `streamlit run` on a private file and free loopback ports:
    {"base": URL, "t0": monotonic start, "tmp": folder of ingestor.log and streamlit.log}. The logs are copied to
    artifacts/screenshots/ at the end; the ingestor must have lived throughout and exited cleanly."""
    import time

    from tests.browser import SHOTS, app_env, spawn, stop, streamlit_server

    tmp = tmp_path_factory.mktemp("e2e")
    env, t0 = app_env(tmp / "demo.duckdb"), time.monotonic()
    ingestor = spawn(["ingestor.py", "--demo", "--db", str(tmp / "demo.duckdb"), "--symbols",
                      "btcusdt,ethusdt,solusdt,bnbusdt"], tmp / "ingestor.log", env)
    try:
        with streamlit_server(env=env, log=tmp / "streamlit.log", watch=[ingestor], logs=[tmp / "ingestor.log"]) as srv:
            yield {"base": srv.base, "t0": t0, "tmp": tmp}
            assert ingestor.poll() is None, "the ingestor died:\n" + (tmp / "ingestor.log").read_text()[-3000:]
    finally:
        stop(ingestor)
        SHOTS.mkdir(parents=True, exist_ok=True)
        for name in ("ingestor.log", "streamlit.log"):
            if (tmp / name).exists():
                shutil.copy(tmp / name, SHOTS / name)
    assert ingestor.returncode == 0, (tmp / "ingestor.log").read_text()[-3000:]
