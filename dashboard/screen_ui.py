"""The Screener page's Streamlit side: submitting and polling the screen job, the pairs table with its row pick,
the hand-off to the Pairs page and the "watch this pair" alert rules.

Hand-off: picking a row sets the sidebar's own widget state (market, timeframe, lookback, Pair Y, Pair X — all
bound to the URL) in the table's callback, then switches to the Pairs page; the sidebar widgets write the new
values into the URL there, so the Pairs view is bookmarkable as usual.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from alerts.rules import validate_rule
from core import legs as leglib
from dashboard import alerts_ui, screener, settings, uploads, ui
from dashboard.catalog import Catalog
from dashboard.settings import Settings

POLL_S = 1.0                          # fragment interval while a screen runs
PAIRS_PAGE = "app_pages/pairs.py"
PAIRS_URL = "pairs"                   # its url path (st.navigation's, from the file name)
TABLE_KEY = "sc_table"
_SHOWN = "_screener_shown"            # (y, x) of each row of the table as last drawn
_PICK = "_screener_pick"              # the picked pair: dict(y, x, spec)
_GOTO = "_screener_goto"              # set by the pick callback: switch to the Pairs page on the next run
_FLASH = "_screener_flash"            # result of the last "watch" click
_DROPPED = "_screener_dropped"        # (market, symbols of the URL that are not in the data)
WATCH_HYSTERESIS = 0.5
WATCH_COOLDOWN_S = 60.0


# ---------------------------------------------------------------- controls
def symbol_options(cat: Catalog, market: str) -> list[str]:
    """The Symbols choices of `market` (one, or several joined by commas: then every symbol as market:SYMBOL)."""
    markets = market.split(",")
    if len(markets) == 1:
        return list(cat.symbols_of(market))
    return [f"{m}:{sym}" for m in markets for sym in cat.symbols_of(m)]


def asked_symbols() -> list[str]:
    """Symbols the URL asks for before the multiselect filters out unknown ones (call before drawing it)."""
    return [v.split(":", 1)[0].lower() + ":" + v.split(":", 1)[1].upper() if ":" in v else v.upper()
            for v in st.query_params.get_all("sc_sym")]


def note_dropped_symbols(asked: list[str], options: list[str], market: str) -> None:
    """Say which symbols of the URL are not in the data (kept until the user edits the symbols)."""
    dropped = [a for a in asked if a not in options]
    if dropped:
        st.session_state[_DROPPED] = (market, dropped)
    market_, dropped = st.session_state.get(_DROPPED, (market, []))
    if dropped and market_ == market:
        st.caption(f":material/info: Not in the {market} data, left out: {', '.join(dropped)}.")


def forget_dropped_symbols() -> None:
    st.session_state.pop(_DROPPED, None)


def origin(s: Settings) -> str:
    """The source's identity in a screen key: the file path, or the upload's digest."""
    if s.source == "upload":
        ds = uploads.current()
        return ds.digest if ds is not None else "no-upload"
    return s.db_path


# ---------------------------------------------------------------- the job
def request(s: Settings, cat: Catalog, spec: screener.ScreenSpec) -> screener.Job:
    """Submit (or find) the screen job for this refresh bucket; paused or uploaded data never re-screens."""
    board = screener.board()
    if s.source == "upload":
        b = 0
    elif s.paused and board.last_done(spec) is not None:
        b = board.last_done(spec).key[1]
    else:
        b = screener.bucket(s.refresh_s)
    return board.request(spec, b, _loader(s, cat, spec))


def _loader(s: Settings, cat: Catalog, spec: screener.ScreenSpec):
    """A function reading the closes of the screen (runs on the worker thread; captures plain values only)."""
    symbols = spec.symbols or None
    if s.source == "upload":
        ds = uploads.current()
        anchor = cat.last_ts(spec.market) if cat.usable else None
        if ds is None or anchor is None:
            return lambda: (pd.DataFrame(), None, None)
        start, end = screener.window(anchor, spec)
        frames, _ = ds.bars(spec.timeframe)
        closes = screener.closes_from_frames({k: v for k, v in frames.items() if symbols is None or k in symbols},
                                             start)
        return lambda: (closes, start, end)
    path = s.db_path
    return lambda: screener.closes_from_file(path, spec, symbols)


def progress(job: screener.Job, spec: screener.ScreenSpec) -> screener.ScreenOutcome | None:
    """Show the job's progress (or failure); return the outcome to draw: this job's, else the last finished one
    of the same screen (drawn under a 'refreshing' note), else None."""
    shown = job if job.state == "done" else screener.board().last_done(spec)
    if job.state == "failed":
        ui.explain("error" if shown is None else "stale", job.error + (" Showing the previous result."
                                                                     if shown is not None else ""))
    elif not job.finished:
        what = "Refreshing the screen" if shown is not None else "Screening"
        st.progress(job.progress, text=f"{what} ({spec.describe()}): {job.stage} · {job.elapsed_s:.0f} s")
    return shown.outcome if shown is not None else None


# ---------------------------------------------------------------- table and row pick
def pairs_table(kept, pairs, spec: screener.ScreenSpec, filters: screener.Filters, open_on: bool) -> None:
    """The best pairs passing the filters; picking a row opens it on the Pairs page (or just selects it)."""
    if kept.empty:
        why = " that pass the filters" if filters.active and len(pairs) else ""
        ui.explain("no-data", f"No pairs{why}. Loosen the filters (half-life, Hurst, correlation, q ≤ FDR) or "
                              "screen more symbols or a longer window.")
        st.session_state[_SHOWN] = []
        return
    shown = screener.table(kept, spec.tf_seconds)
    st.session_state[_SHOWN] = list(zip(shown["y"], shown["x"]))
    more = f"the best {len(shown):,} of {len(kept):,}" if len(kept) > len(shown) else f"all {len(kept):,}"
    action = ("Pick a row to open the pair on the Pairs page." if open_on else
              "Pick a row, then use the buttons below the table.")
    st.caption(f"Showing {more} pairs{' that pass the filters' if filters.active else ''}, best first (cointegrated, "
               "then unstable or with a stationary leg, then the rest; by p-value within each); click a column to "
               f"sort. {action}")
    st.dataframe(shown, key=TABLE_KEY, on_select=lambda: _on_pick(spec, open_on), selection_mode="single-row",
                 hide_index=True, width="stretch", height=min(38 + 35 * len(shown), 520),
                 column_config=screener.TABLE_COLUMNS)


def _on_pick(spec: screener.ScreenSpec, open_on: bool) -> None:
    """Table callback (before the rerun): remember the picked pair; set the sidebar to it when opening."""
    sel = st.session_state.get(TABLE_KEY)
    rows = list(sel.selection.rows) if sel is not None else []
    shown = st.session_state.get(_SHOWN) or []
    if not rows or rows[0] >= len(shown):
        return
    y, x = shown[rows[0]]
    st.session_state[_PICK] = {"y": y, "x": x, "spec": spec}
    st.session_state.pop(_FLASH, None)
    if open_on:
        _open_on_pairs(y, x, spec)


def _open_on_pairs(y: str, x: str, spec: screener.ScreenSpec) -> None:
    """Ask for the Pairs page with the sidebar's URL-bound widgets (see dashboard/settings.py) set to the screen's
    market, bars and pair: applied in the Pairs page's own run, the switch itself happens on the next run here."""
    settings.request_view(page=PAIRS_URL, mkt=spec.markets[0], tf=spec.timeframe, lb=spec.lookback, y=y, x=x)
    st.session_state[_GOTO] = True


def go_to_pairs_if_asked(in_fragment: bool = False) -> None:
    """After a pick: switch to the Pairs page (from the page's full run; a fragment run asks for one first)."""
    if not st.session_state.get(_GOTO):
        return
    if in_fragment:
        st.rerun(scope="app")
    del st.session_state[_GOTO]
    st.switch_page(PAIRS_PAGE, query_params={})  # the sidebar's bound widgets write the view into the URL


def _open_pick() -> None:
    pick = st.session_state.get(_PICK)
    if pick:
        _open_on_pairs(pick["y"], pick["x"], pick["spec"])


# ---------------------------------------------------------------- the picked pair: open / watch
def pick_actions(s: Settings, spec: screener.ScreenSpec) -> None:
    """Buttons for the last picked pair: open it on the Pairs page, or watch its z-score with alert rules."""
    pick = st.session_state.get(_PICK)
    if not pick or pick["spec"].market != spec.market:
        return
    y, x = pick["y"], pick["x"]
    st.markdown(f"**Picked:** {y} / {x} · {pick['spec'].timeframe} bars")
    c = st.columns(2)
    c[0].button("Open on Pairs page", icon=":material/compare_arrows:", key="sc_open_pick", on_click=_open_pick,
                type="primary")
    with c[1].popover("Watch this pair", icon=":material/notifications:", disabled=s.source != "live",
                      help="Alerts are evaluated on the live file." if s.source != "live" else None):
        st.markdown(f"Alert when the **{y} / {x}** spread z-score ({pick['spec'].timeframe} bars) stretches past "
                    "±threshold: two rules, *z above +threshold* and *z below −threshold*. Each fires once when "
                    f"the spread gets there (at once if it already is) and re-arms after z is back inside by "
                    f"{WATCH_HYSTERESIS:g}.")
        k = f"{y}_{x}"
        st.number_input("|z| threshold", 0.5, 10.0, 2.0, 0.25, key=f"sc_w_thr_{k}")
        st.number_input("Window (bars)", 10, 5000, min(max(s.window, 10), 5000), 10, key=f"sc_w_win_{k}",
                              help="Bars for the hedge ratio and the z-score (the sidebar window by default).")
        st.button("Create the alert rules", type="primary", key=f"sc_w_go_{k}",
                  on_click=_watch, args=(s.db_path, pick["spec"].markets[0], y, x, pick["spec"].timeframe))
    flash = st.session_state.get(_FLASH)
    if flash and flash[0] == (y, x):
        (st.success if flash[1] == "ok" else st.error)(flash[2], icon=":material/check_circle:" if flash[1] == "ok"
                                                       else ":material/error:")


def _watch(db_path: str, market: str, y: str, x: str, timeframe: str) -> None:
    k = f"{y}_{x}"
    thr = float(st.session_state.get(f"sc_w_thr_{k}", 2.0))
    win = int(st.session_state.get(f"sc_w_win_{k}", 60))
    ok, message = watch_pair(db_path, market, y, x, timeframe, thr, win)
    st.session_state[_FLASH] = ((y, x), "ok" if ok else "error", message)


def watch_rules(market: str, y: str, x: str, timeframe: str, threshold: float, window: int) -> list[dict]:
    """The two rule bodies behind "watch this pair": z above +threshold, z below −threshold. `y` / `x` may be
    market:SYMBOL legs (a screen across markets); a bare symbol is of `market`."""
    yl, xl = leglib.parse_leg(y, market), leglib.parse_leg(x, market)
    base = {"market": yl.market, "symbol": yl.symbol, "symbol2": xl.symbol,
            "market2": xl.market if xl.market != yl.market else None, "metric": "zscore", "timeframe": timeframe,
            "lookback": int(window), "hysteresis": WATCH_HYSTERESIS, "cooldown_s": WATCH_COOLDOWN_S,
            "note": "watched from the Screener", "enabled": True}
    return [{**base, "op": ">", "threshold": abs(threshold)}, {**base, "op": "<", "threshold": -abs(threshold)}]


def watch_pair(db_path: str, market: str, y: str, x: str, timeframe: str, threshold: float, window: int
               ) -> tuple[bool, str]:
    """Create the watch rules (skipping any identical rule that exists); (ok, a sentence for the page)."""
    existing = alerts_ui.rules(db_path)
    if existing.value is None:
        return False, f"Nothing was saved: {existing.message}"
    have = {r.definition: r for r in existing.value}
    created, kept, errors = [], [], []
    for fields in watch_rules(market, y, x, timeframe, threshold, window):
        definition = validate_rule(fields).definition
        if definition in have:
            kept.append(have[definition])
            continue
        rule, errs = alerts_ui.save_rule(db_path, fields)
        if rule is None:
            errors.append("; ".join(f"{f}: {m}" for f, m in errs.items()))
        else:
            created.append(rule)
    parts = []
    if created:
        parts.append("Created " + ", ".join(f"#{r.id} ({r.describe()})" for r in created) + ".")
    if kept:
        parts.append("Already watched: " + ", ".join(f"#{r.id}" for r in kept) + ".")
    if errors:
        parts.append("Not saved: " + " / ".join(errors))
        return False, " ".join(parts)
    parts.append("The ingestor evaluates them within about a second; firings pop up as toasts and on the Alerts page.")
    return True, " ".join(parts)
