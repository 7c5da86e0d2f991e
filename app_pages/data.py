"""Data: ingestion health, CSV downloads, CSV uploads. Each section is one function; later panels append below."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from dashboard import data, export, figures, settings, tables, ui, uploads
from dashboard.settings import Settings

MAX_TICK_ROWS = 1_000_000
MAX_TICK_SPAN = dt.timedelta(hours=24)

s = settings.current()
st.header("Data", anchor=False)


# ---------------------------------------------------------------- ingestion health
def health_section(s: Settings) -> None:
    st.subheader("Ingestion health", anchor=False)

    @st.fragment(run_every=None if s.paused else s.refresh_s)
    def health() -> None:
        now = dt.datetime.now(dt.UTC)
        res = data.status(s.db_path, s.refresh_s)
        if res.value is None:
            ui.explain("missing" if res.state == "missing" else res.state,
                       res.message if res.state != "missing" else
                       f"No tick file at `{s.db_path}` yet: the ingestor is not running or has not started writing. "
                       "Start it with `make demo` (simulated exchange) or `make run` (live Binance).")
            return
        ui.explain(res.state, res.message)
        cat = data.catalog(s.db_path, "live", s.refresh_s)
        table = tables.health_table(res.value, now, cat.frame)
        if table.empty:
            ui.explain("empty", "The ingestor has not written a status row yet (it writes one per symbol once "
                                "connected).")
            return
        fresh = table["status_age_s"] < 15
        connected = int((table["connected"].fillna(False) & fresh).sum())
        c = st.columns(4)
        c[0].metric("Connected", f"{connected} / {len(table)}",
                    help="Symbols whose stream is up and whose status row is less than 15 s old")
        c[1].metric("Ticks/s", f"{table['ticks_per_s'].fillna(0).sum():.1f}")
        c[2].metric("Newest tick age", ui.age(table["last_tick_age_s"].min()))
        c[3].metric("Gaps filled / found", f"{int(table['gaps_filled'].fillna(0).sum())} / "
                                           f"{int(table['gaps_found'].fillna(0).sum())}")
        if not fresh.all():
            st.caption(":material/schedule: Some status rows are older than 15 s: the ingestor may be stopped.")
        problems = int(table["problem"].astype(bool).sum())
        f1, f2 = st.columns([1, 2], vertical_alignment="bottom")
        show = f1.segmented_control("Show", ["All", "Problems"], default="All", required=True, key="health_show",
                                    help="Problems: not trading on the exchange (halted, delisted), disconnected, "
                                         "status row stale, gaps the exchange could not fill, no tick for 5 min.")
        query = f2.text_input("Search symbols", key="health_q", placeholder="e.g. BTC or usdt eth",
                              label_visibility="collapsed")
        shown = tables.filter_health(table, query, show == "Problems")
        if len(shown) <= tables.STATIC_ROWS:
            st.table(tables.static_table(shown, tables.HEALTH_COLUMNS, hide_index=True))
            how = "problems first, then by market and symbol"
        else:  # hundreds of symbols: the scrolling, sortable grid
            st.dataframe(shown, column_config=tables.HEALTH_COLUMNS, hide_index=True, width="stretch",
                         height=min(38 + 35 * max(len(shown), 1), 530), key="health-table")
            how = "problems listed first · click a column header to sort"
        st.caption(f"{len(shown):,} of {len(table):,} symbols shown · {problems:,} with a problem · {how}.")
        rate = data.tick_rate(s.db_path, s.market, s.refresh_s)
        if rate.ok and not rate.value.empty:
            ui.chart(figures.tick_rate(rate.value, 10, f"rate:{s.market}"), key="data-tick-rate")
            if rate.value["symbol"].nunique() > figures.TICK_RATE_LINES:
                st.caption(f"The {figures.TICK_RATE_LINES} busiest symbols of the window; the "
                           f"{rate.value['symbol'].nunique() - figures.TICK_RATE_LINES:,} others summed as one line.")
        ev = data.events(s.db_path, s.refresh_s)
        if ev.ok and not ev.value.empty:
            with st.expander(f"Recent ingestion events ({len(ev.value)})", icon=":material/history:"):
                st.table(tables.static_table(ev.value, tables.EVENT_COLUMNS, hide_index=True))

    health()


# ---------------------------------------------------------------- downloads
def downloads_section(s: Settings) -> None:
    st.subheader("Downloads", anchor=False)
    st.caption("CSV with UTC ISO-8601 timestamps; columns are documented in docs/csv-formats.md. Pair analytics "
               "series are on the **Pairs** page, backtest trades on the **Backtest** page.")
    cat = data.current_catalog(s)
    if not ui.need_catalog(cat):
        return
    left, right = st.columns(2)
    with left.container(border=True):
        st.markdown("**Bars** — sidebar symbols, timeframe and lookback")
        symbols = s.symbols or s.all_symbols
        res = data.bars(s, symbols, cat)
        ui.explain(res.state, res.message)
        if res.ok:
            n = sum(len(f) for f in res.value.values())
            frames = res.value
            st.download_button(f"Bars CSV ({n:,} rows)", data=lambda: export.bars_csv(frames),
                               file_name=export.filename("bars", s.market, s.timeframe, *symbols), mime="text/csv",
                               icon=":material/download:", on_click="ignore", key="dl-bars", disabled=n == 0)
    with right.container(border=True):
        st.markdown(f"**Ticks** — one symbol, at most {MAX_TICK_SPAN.total_seconds() / 3600:.0f} h and "
                    f"{MAX_TICK_ROWS:,} rows")
        if s.source != "live":
            st.caption("Tick downloads read the live file; switch the source to *live file*.")
            return
        tick_form(s, cat.last_ts(s.market))


@st.fragment  # "Prepare tick CSV" reruns this form only, not the page's health panel, bars and uploads
def tick_form(s: Settings, last: dt.datetime | None) -> None:
    end_default = pd.Timestamp(last or dt.datetime.now(dt.UTC)).ceil("min").to_pydatetime().replace(tzinfo=None)
    with st.form("ticks-form", border=False):
        symbol = st.selectbox("Symbol", s.all_symbols, key="dl_tick_symbol")
        c1, c2 = st.columns(2)
        start = c1.datetime_input("From (UTC)", value=end_default - dt.timedelta(minutes=15), key="dl_tick_start",
                                  step=60)
        end = c2.datetime_input("To (UTC)", value=end_default, key="dl_tick_end", step=60)
        go = st.form_submit_button("Prepare tick CSV", icon=":material/table_view:")
    if go:
        _prepare_ticks(s, symbol, start, end)
    ready = st.session_state.get("_tick_csv")
    if ready:
        st.download_button(f"{ready['label']}", data=ready["bytes"], file_name=ready["name"], mime="text/csv",
                           icon=":material/download:", on_click="ignore", key="dl-ticks")


def _as_utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _prepare_ticks(s: Settings, symbol: str, start: dt.datetime, end: dt.datetime) -> None:
    st.session_state.pop("_tick_csv", None)
    if start is None or end is None:
        st.error("Pick both a start and an end time.")
        return
    start, end = _as_utc(start), _as_utc(end)
    if end <= start:
        st.error(f"The end ({end:%Y-%m-%d %H:%M}) must be after the start ({start:%Y-%m-%d %H:%M}).")
        return
    if end - start > MAX_TICK_SPAN:
        st.error(f"That range is {(end - start).total_seconds() / 3600:.1f} h; tick downloads are limited to "
                 f"{MAX_TICK_SPAN.total_seconds() / 3600:.0f} h. Use bars for longer periods.")
        return
    res = data.ticks(s.db_path, s.market, symbol, start, end, MAX_TICK_ROWS + 1)
    if res.value is None:
        st.warning(f"Could not read ticks: {res.message}. Try again in a moment.")
        return
    ticks = res.value
    if ticks.empty:
        st.info(f"No {symbol} ticks between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC.")
        return
    clipped = len(ticks) > MAX_TICK_ROWS
    ticks = ticks.iloc[:MAX_TICK_ROWS]
    body = export.ticks_csv(ticks, symbol)
    label = f"{symbol} ticks CSV ({len(ticks):,} rows, {len(body) / 1024:,.0f} KB)"
    if clipped:
        st.caption(f"Clipped to the first {MAX_TICK_ROWS:,} ticks; narrow the range for the rest.")
    st.session_state["_tick_csv"] = {"bytes": body, "label": label,
                                     "name": export.filename(symbol, "ticks", start, end)}


# ---------------------------------------------------------------- uploads
def _use_upload() -> None:
    st.session_state["src"] = "upload"  # the sidebar's source control (label == URL value)


def _clear_upload() -> None:
    uploads.store(None)
    st.session_state.pop("_upload_ids", None)
    if st.session_state.get("src") == "upload":
        st.session_state["src"] = "live file"


def uploads_section(s: Settings) -> None:
    st.subheader("Upload", anchor=False)
    st.caption("OHLC bars (Binance klines CSV, or a header `time,open,high,low,close,volume`) or ticks "
               "(`time,price,qty`, or a Binance trades CSV). Times in UTC (ISO 8601 or epoch s/ms/µs). The symbol "
               "comes from a `symbol` column, the file name (`BTCUSDT-1m-2024-05-01.csv`) or the box below. "
               f"Limit {uploads.MAX_UPLOAD_BYTES / 2**20:.0f} MB per file.")
    symbol = st.text_input("Symbol (if the file does not say)", key="upload_symbol", placeholder="e.g. BTCUSDT",
                           max_chars=20)
    files = st.file_uploader("CSV files", type=["csv", "txt"], accept_multiple_files=True, key="upload_files")
    ids = tuple((f.file_id, f.name, f.size) for f in files or [])
    if ids and ids != st.session_state.get("_upload_ids"):
        parsed, errors = [], []
        for f in files:
            try:
                parsed.append(uploads.parse_csv(f.name, f.getvalue(), symbol=symbol or None))
            except uploads.UploadError as exc:
                errors.append(str(exc))
        for e in errors:
            st.error(e, icon=":material/error:")
        if parsed and not errors:
            try:
                uploads.store(uploads.combine(parsed))
                st.session_state["_upload_ids"] = ids
            except uploads.UploadError as exc:
                st.error(str(exc), icon=":material/error:")
    ds = uploads.current()
    if ds is None:
        return
    with st.container(border=True):
        what = "OHLC bars" if ds.kind == "ohlc" else "ticks"
        bar = f", {uploads.bar_label(ds.bar_seconds)} bars" if ds.kind == "ohlc" else ""
        st.markdown(f"**Uploaded:** {', '.join(ds.files)} — {ds.rows:,} rows of {what}{bar}")
        st.dataframe(ds.catalog().drop(columns="market"), hide_index=True, width="stretch",
                     column_config={"ticks": st.column_config.NumberColumn("rows"),
                                    "first_ts": st.column_config.DatetimeColumn("first (UTC)"),
                                    "last_ts": st.column_config.DatetimeColumn("last (UTC)")})
        c1, c2 = st.columns(2)
        if s.source == "upload":
            c1.success("The pages are analysing this upload (sidebar source: upload).", icon=":material/check:")
        else:
            c1.button("Analyse this upload", on_click=_use_upload, type="primary", icon=":material/insights:")
        c2.button("Remove upload", on_click=_clear_upload, icon=":material/delete:")


def import_section(s: Settings) -> None:
    # imported here, once the panels above are drawn: the dump importer (pyarrow.csv & co.) takes ~0.3 s to import
    from dashboard.import_panel import render_import_panel

    render_import_panel(s.db_path)


health_section(s)
downloads_section(s)
uploads_section(s)
import_section(s)
