"""The shared sidebar: every setting a page reads, bound to URL query parameters so a view can be bookmarked.

`sidebar(catalog)` draws the controls (in the entrypoint, so they survive page switches) and returns a frozen
`Settings`; pages read it back with `current()`. Widget keys double as query-parameter names (`?tf=1m&lb=2h`).

Pair legs may come from different markets: Pair Y / Pair X list the sidebar market's symbols bare and every other
market's as `market:SYMBOL` (`?mkt=spot&y=usdm:BTCUSDT&x=BTCUSDT` is perpetual vs spot BTCUSDT). A bare symbol
always means the sidebar market's, as in URLs from before cross-market legs.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from core import legs as leglib
from core import timeframes
from core.durations import parse_duration
from dashboard import uploads
from dashboard.catalog import Catalog
from dashboard.inputs import bounded_number

TIMEFRAMES = timeframes.CHOICES
LOOKBACKS = {k: int(parse_duration(k)) for k in ("15m", "1h", "2h", "6h", "12h", "24h", "3d", "7d")}
REFRESH = {k: parse_duration(k) for k in ("1s", "2s", "5s", "10s", "30s", "1m")}
# Sidebar label (also the URL value) -> method key. Static fits use the whole window; rolling / Kalman vary in time.
HEDGE_METHODS = {"OLS": "ols", "Huber": "huber", "Theil-Sen": "theil_sen", "Rolling OLS": "rolling", "Kalman": "kalman"}
SOURCES = {"live file": "live", "upload": "upload"}
MAX_BARS = 20_000  # per symbol and query; longer lookbacks at fine timeframes are clipped (and the page says so)
DEFAULTS = {"tf": "1m", "lb": "2h", "win": 60, "hedge": "OLS", "every": "2s"}
DEFAULT_SYMBOLS = 4  # the Market page starts with this many charts: the most traded symbols

_STATE_KEY = "_tickdesk_settings"
_PENDING_KEY = "_tickdesk_pending_settings"
# widget key -> (default applied, symbols it was computed from) for selections that follow the data; a key
# leaves this dict once the user (or a bookmark's URL, or the Screener) chooses a value for it
_DEFAULTED_KEY = "_tickdesk_defaulted"


@dataclass(frozen=True)
class Settings:
    """What the sidebar selected. `lookback_s` is already clipped to MAX_BARS bars of `timeframe`."""

    db_path: str
    source: str                       # 'live' | 'upload'
    market: str
    symbols: tuple[str, ...]          # selected symbols (Market page)
    all_symbols: tuple[str, ...]      # every symbol available from the source
    y: str | None                     # pair: dependent leg, as picked: SYMBOL (of `market`) or market:SYMBOL
    x: str | None                     # pair: hedge leg, likewise
    timeframe: str
    lookback: str
    lookback_s: int
    window: int                       # rolling window, in bars
    hedge_method: str
    refresh: str
    paused: bool
    clipped: bool = False             # lookback was shortened to MAX_BARS bars

    @property
    def run_every(self) -> float | None:
        """Fragment refresh interval in seconds (None when paused or when analysing an upload, which never changes)."""
        return None if self.paused or self.source != "live" else REFRESH[self.refresh]

    @property
    def refresh_s(self) -> float:
        return REFRESH[self.refresh]

    @property
    def tf_seconds(self) -> int:
        return timeframes.seconds(self.timeframe)

    @property
    def y_leg(self) -> leglib.Leg | None:
        return _leg(self.y, self.market)

    @property
    def x_leg(self) -> leglib.Leg | None:
        return _leg(self.x, self.market)

    @property
    def legs(self) -> tuple[leglib.Leg, leglib.Leg] | None:
        """(Y, X) legs with their markets, or None unless two different legs are picked."""
        y, x = self.y_leg, self.x_leg
        return (y, x) if y is not None and x is not None and y != x else None

    @property
    def cross_market(self) -> bool:
        return self.legs is not None and leglib.qualified(self.legs)

    @property
    def pair(self) -> tuple[str, str] | None:
        """(Y, X) names as columns and titles: bare symbols when both legs are of one market, else market:SYMBOL."""
        legs = self.legs
        return None if legs is None else tuple(leglib.labels(legs))

    @property
    def lookback_delta(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.lookback_s)

    def uirevision(self, *parts: object) -> str:
        """A figure's `uirevision`: constant while the view is the same, so zoom/pan survive refreshes."""
        return ":".join(str(p) for p in (self.source, self.market, self.timeframe, self.lookback, *parts))


def _leg(text: str | None, market: str) -> leglib.Leg | None:
    try:
        return leglib.parse_leg(text, market) if text else None
    except leglib.LegError:
        return None


def pair_options(catalog: Catalog, market: str) -> list[str]:
    """Pair Y / Pair X choices: `market`'s symbols bare, then every other market's as market:SYMBOL."""
    out = list(catalog.symbols_of(market))
    for m in catalog.markets:
        if m != market:
            out.extend(f"{m}{leglib.SEP}{sym}" for sym in catalog.symbols_of(m))
    return out


def _normalize_leg(key: str, options: list[str], market: str) -> None:
    """Before the Pair Y / X widget is drawn: a value naming an available leg in another spelling (`spot:ETHUSDT`
    while the sidebar market is spot, a bare or lower-case symbol from a URL or a page hand-off) is rewritten to
    the option that names it, so it is kept instead of falling back to the default."""
    value = st.session_state.get(key) if key in st.session_state else st.query_params.get(key)
    if not value or value in options:
        return
    leg = _leg(str(value), market)
    if leg is not None and leglib.short(leg, market) in options:
        st.session_state[key] = leglib.short(leg, market)


def default_pair(symbols: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(Y, X): X is BTC if present (the usual hedge leg), Y the first other symbol (ETH if present)."""
    if not symbols:
        return None, None
    x = next((s for s in symbols if s.startswith("BTC")), symbols[0])
    others = [s for s in symbols if s != x]
    y = next((s for s in others if s.startswith("ETH")), others[0] if others else x)
    return y, x


def default_symbols(catalog: Catalog, market: str, k: int = DEFAULT_SYMBOLS) -> list[str]:
    """The `k` symbols of `market` with the most stored ticks, in catalog order (a universe of 24 opens on its
    majors, not on the first four alphabetically)."""
    frame = catalog.frame
    rows = frame.loc[frame["market"] == market] if not frame.empty else frame
    if rows.empty:
        return []
    ticks = pd.to_numeric(rows["ticks"], errors="coerce").fillna(0).to_numpy()
    order = sorted(range(len(rows)), key=lambda i: -ticks[i])[:k]  # stable: ties keep catalog order
    return [rows["symbol"].iloc[i] for i in sorted(order)]


def _index(options: list, value, fallback: int = 0) -> int:
    return options.index(value) if value in options else fallback


def requested_source() -> str:
    """The source asked for before the sidebar is drawn (session state, else the URL): 'live' or 'upload'."""
    label = st.session_state.get("src") or st.query_params.get("src") or "live file"
    source = SOURCES.get(label, "live")
    if source == "upload" and uploads.check_lost():  # a reload after the server dropped the upload
        try:  # the URL goes back to the live file too (a later reload must not ask for the upload again)
            st.query_params.pop("src", None)
        except StreamlitAPIException:  # bound to the control already: the control's value rewrites it
            pass
        return "live"  # the sidebar turns the Source control to the live file (see sidebar)
    return source


def request_view(page: str | None = None, **values) -> None:
    """Make the sidebar show these settings (widget key -> value, e.g. y="ETHUSDT") from the next full run on
    (of `page`, a page's url path such as "pairs", when given: the run of a page switch).

    For callbacks of widgets inside a fragment: a value written to a sidebar key there would lose against the
    browser's own widget value on the next full run, so it is applied just before the sidebar is drawn, in the
    run that draws the target page. Not earlier: a rerun request that the browser sent meanwhile (a fragment's
    `run_every` tick) carries the old widget values, is merged into the page switch's rerun and would put them
    back on the target page while the browser keeps showing the new ones."""
    st.session_state[_PENDING_KEY] = {"page": page, "values": dict(values)}


def _apply_requested_view(page: str | None) -> None:
    pending = st.session_state.get(_PENDING_KEY)
    if not pending or pending["page"] not in (None, page):
        return
    del st.session_state[_PENDING_KEY]
    for key, value in pending["values"].items():
        st.session_state[key] = value
        _chosen(key)


def _chosen(key: str) -> None:
    """The value of `key` is the user's choice from now on: it no longer follows the data."""
    st.session_state.setdefault(_DEFAULTED_KEY, {}).pop(key, None)


def is_defaulted(key: str) -> bool:
    """True while the selection `key` is the app's default (it follows the data), False once the user chose."""
    return key in st.session_state.get(_DEFAULTED_KEY, {})


def _follow_default(key: str, default, symbols: tuple[str, ...]) -> None:
    """Before drawing the widget `key`: keep a defaulted selection on the default of the symbols stored now.

    A page opened during start-up sees only the symbols stored so far; when more arrive, a selection that is
    still the default becomes the new default, while a value the user picked (in the widget, through the URL
    of a bookmark, or by a Screener pick) stays as it is. The default is recomputed only when the symbols
    change, so a redraw for another reason never reshuffles it."""
    defaulted = st.session_state.setdefault(_DEFAULTED_KEY, {})
    if key not in st.session_state:  # first draw in this session (or the widget was not drawn last run)
        if st.query_params.get_all(key):
            defaulted.pop(key, None)  # the URL holds a value the user chose (a bookmark, a shared link)
        else:
            defaulted[key] = (default, symbols)
        return
    if key not in defaulted:
        return
    applied, seen = defaulted[key]
    if st.session_state[key] != applied:  # changed without a callback (e.g. the URL): the user's choice
        defaulted.pop(key)
        return
    if symbols != seen:
        if default != applied:
            st.session_state[key] = default
        defaulted[key] = (default, symbols)


def _applied_default(key: str, default):
    """The default to draw `key` with: the one `_follow_default` applied, so that widget value and default agree
    (a value equal to its default stays out of the URL)."""
    entry = st.session_state.get(_DEFAULTED_KEY, {}).get(key)
    return entry[0] if entry is not None else default


def sidebar(catalog: Catalog, db_path: Path, page: str | None = None) -> Settings:
    """Draw the shared controls and store the result for `current()`. `page`: the url path of the page this run
    draws (a view requested for it is applied first)."""
    _apply_requested_view(page)
    sb = st.sidebar
    source = SOURCES[sb.segmented_control("Source", list(SOURCES), default="live file", required=True, key="src",
                                          bind="query-params",
                                          help="Analyse the live DuckDB file, or a CSV uploaded on the Data page.",
                                          on_change=uploads.forget_lost)]
    if uploads.lost() and source == "upload":  # seeded from the URL on this first run: switch it once
        request_view(src="live file")
        st.rerun()
    if uploads.lost() and source == "live":
        sb.info("The upload this link pointed to is no longer held by the server (it restarted, or dropped it to "
                "make room): showing the live file. Upload the file again on the **Data** page to analyse it.",
                icon=":material/upload_file:")
    markets = catalog.markets or ("spot",)
    market = sb.selectbox("Market", markets, index=_index(list(markets), "spot"), key="mkt", bind="query-params")
    symbols_all = catalog.symbols_of(market)
    if symbols_all:
        seen = (market, *symbols_all)
        dsym = default_symbols(catalog, market)
        dy, dx = default_pair(symbols_all)
        options = pair_options(catalog, market)
        for key in ("y", "x"):
            _normalize_leg(key, options, market)
        seen_pair = (market, *options)
        for key, default, known in (("sym", dsym, seen), ("y", dy, seen_pair), ("x", dx, seen_pair)):
            _follow_default(key, default, known)
        chosen = sb.multiselect("Symbols", symbols_all, default=_applied_default("sym", dsym), key="sym",
                                bind="query-params", on_change=_chosen, args=("sym",),
                                placeholder=f"Type to search {len(symbols_all):,} symbols",
                                help=f"Symbols charted on the Market page; it opens on the {DEFAULT_SYMBOLS} most "
                                     "traded. Type to search. The Market page's summary table lists every symbol "
                                     "and can add the rows you tick.")
        dy, dx = _applied_default("y", dy), _applied_default("x", dx)
        c1, c2 = sb.columns(2)
        other = " Other markets' symbols are listed as market:SYMBOL (e.g. usdm:BTCUSDT for the perpetual against " \
                "spot BTCUSDT); a bare symbol is the sidebar market's."
        y = c1.selectbox("Pair Y", options, index=_index(options, dy), key="y", bind="query-params",
                         on_change=_chosen, args=("y",), help="Dependent leg: spread = Y − β·X − α." + other)
        x = c2.selectbox("Pair X", options, index=_index(options, dx), key="x", bind="query-params",
                         on_change=_chosen, args=("x",), help="Hedge leg." + other)
    else:
        sb.caption("No symbols yet — " + ("upload a file on the Data page." if source == "upload"
                                          else "waiting for the ingestor to store ticks."))
        chosen, y, x = [], None, None
    timeframe = sb.segmented_control("Timeframe", TIMEFRAMES, default=DEFAULTS["tf"], required=True, key="tf",
                                     bind="query-params")
    c1, c2 = sb.columns(2)
    lookback = c1.selectbox("Lookback", list(LOOKBACKS), index=_index(list(LOOKBACKS), DEFAULTS["lb"]), key="lb",
                            bind="query-params")
    window = bounded_number("Window (bars)", 5, 5000, DEFAULTS["win"], 5, key="win", where=c2, note=sb,
                            bind="query-params",
                            help="Rolling window for z-score, correlation, rolling β, volatility.")
    hedge = HEDGE_METHODS[sb.selectbox(
        "Hedge method", list(HEDGE_METHODS), index=_index(list(HEDGE_METHODS), DEFAULTS["hedge"]), key="hedge",
        bind="query-params", help="β of the spread: a static fit over the window (OLS, Huber, Theil-Sen), a rolling "
                                  "OLS over the sidebar window, or a Kalman filter.")]
    c1, c2 = sb.columns([3, 2], vertical_alignment="bottom")
    refresh = c1.selectbox("Refresh", list(REFRESH), index=_index(list(REFRESH), DEFAULTS["every"]), key="every",
                           bind="query-params")
    paused = c2.toggle("Pause", value=False, key="pause", bind="query-params")

    lookback_s = LOOKBACKS[lookback]
    max_s = MAX_BARS * timeframes.seconds(timeframe)
    settings = Settings(
        db_path=str(db_path), source=source, market=market, symbols=tuple(chosen), all_symbols=tuple(symbols_all),
        y=y, x=x, timeframe=timeframe, lookback=lookback, lookback_s=min(lookback_s, max_s), window=int(window),
        hedge_method=hedge, refresh=refresh, paused=bool(paused), clipped=lookback_s > max_s)
    if settings.clipped:
        sb.caption(f"Lookback clipped to {MAX_BARS:,} bars of {timeframe}; pick a coarser timeframe for more history.")
    st.session_state[_STATE_KEY] = settings
    return settings


def current() -> Settings:
    """The settings drawn by the entrypoint in this run (pages call this at the top)."""
    try:
        return st.session_state[_STATE_KEY]
    except KeyError:
        raise RuntimeError("dashboard settings are drawn by streamlit_app.py; run the app with "
                           "`streamlit run streamlit_app.py`, not a page file") from None
