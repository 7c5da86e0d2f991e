"""Table builders for the pages: plain frames with display-ready columns (maths beyond sums stays in quantlib)."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import streamlit as st

from core import durations
from dashboard.formats import compact, plain_number, utc_time


# 8 significant digits, trailing zeros dropped (Streamlit's printf "%g" is String(Number(x.toPrecision(8)))):
# 92510.29, 0.71195 and 0.00000723 read as printed; "%.4f" showed sub-cent coins as 0.0000 and "plain" shows
# 20 decimals of float noise (3323.1600000000003).
PRICE_FORMAT = "%.8g"


def _formatter(config: dict):
    """A cell formatter for one `st.column_config` entry (number printf / percent / compact, datetime, checkbox)."""
    kind = config["type_config"]["type"]
    fmt = config["type_config"].get("format")
    if kind == "datetime":
        millis = "SSS" in (fmt or "")
        return lambda v: utc_time(v, millis)
    if kind == "checkbox":
        return lambda v: "yes" if v else "no"
    if kind == "number" and not fmt:
        return plain_number
    if kind != "number":
        return str
    if fmt == "percent":
        return lambda v: f"{v * 100:.2f}%"
    if fmt == "compact":
        return compact
    return lambda v: fmt % v


def static_table(frame: pd.DataFrame, columns: dict, hide_index: bool = False):
    """`frame` as a pandas Styler for `st.table`, labelled and formatted as `columns` (the st.column_config
    mapping the same frame would get in `st.dataframe`); missing values print as —.

    st.table is plain HTML: a page without any st.dataframe never loads the data grid's ~1.2 MB of JavaScript,
    about a second of a fresh browser's page open here. Small read-only tables use it."""
    labels = {c: columns[c]["label"] for c in frame.columns if c in columns}
    styler = frame.rename(columns=labels).style.format(
        {labels[c]: _formatter(columns[c]) for c in labels}, na_rep="—")
    return styler.hide(axis="index") if hide_index else styler


def column_notes(columns: dict) -> str:
    """The `help` texts of an st.column_config mapping as one caption line (st.table headers have no tooltips)."""
    return " · ".join(f"{cfg['label']}: {cfg['help'][0].lower()}{cfg['help'][1:]}" for cfg in columns.values()
                      if cfg.get("help"))


STATIC_ROWS = 40   # tables up to this many rows are drawn with st.table (see static_table); longer ones in the grid

PERCENT_ZERO = 5e-5   # |x| below this shows as 0% at the "percent" format's two decimals (not "-0%")


def zero_small(values: pd.Series | float, tol: float = PERCENT_ZERO):
    """Values that display as zero set to exactly 0.0 (missing values stay missing): the percent format would
    print a tiny negative change as '-0%'."""
    if isinstance(values, pd.Series):
        return values.mask(values.abs() < tol, 0.0)
    return 0.0 if values is not None and abs(values) < tol else values


def market_stats(frames: dict[str, pd.DataFrame], tf_seconds: int) -> pd.DataFrame:
    """Per symbol over the window: last, change, high/low, volume, trades/s, window VWAP and distance to it."""
    rows = []
    for sym, b in frames.items():
        if b.empty:
            rows.append({"symbol": sym})
            continue
        span_s = (b.index[-1] - b.index[0]).total_seconds() + tf_seconds
        vol = float(b["volume"].sum())
        vwap = float(b["quote_volume"].sum()) / vol if vol > 0 else np.nan
        last = float(b["close"].iloc[-1])
        rows.append({"symbol": sym, "last": last, "change": last / float(b["open"].iloc[0]) - 1.0,
                     "high": float(b["high"].max()), "low": float(b["low"].min()), "volume": vol,
                     "quote_volume": float(b["quote_volume"].sum()), "trades_per_s": float(b["trades"].sum()) / span_s,
                     "vwap": vwap, "dist_vwap": last / vwap - 1.0 if np.isfinite(vwap) else np.nan,
                     "last_bar": b.index[-1]})
    cols = ["symbol", "last", "change", "high", "low", "volume", "quote_volume", "trades_per_s", "vwap", "dist_vwap",
            "last_bar"]
    out = pd.DataFrame(rows, columns=cols).set_index("symbol")
    for c in ("change", "dist_vwap"):
        out[c] = zero_small(out[c].astype("float64"))
    return out


STATS_COLUMNS = {
    "last": st.column_config.NumberColumn("Last", format=PRICE_FORMAT),
    "change": st.column_config.NumberColumn("Change", format="percent", help="Last close vs first open of the window"),
    "high": st.column_config.NumberColumn("High", format=PRICE_FORMAT),
    "low": st.column_config.NumberColumn("Low", format=PRICE_FORMAT),
    "volume": st.column_config.NumberColumn("Volume", format="compact"),
    "quote_volume": st.column_config.NumberColumn("Quote volume", format="compact"),
    "trades_per_s": st.column_config.NumberColumn("Trades/s", format="%.2f"),
    "vwap": st.column_config.NumberColumn("VWAP", format=PRICE_FORMAT, help="Volume-weighted average price of the window"),
    "dist_vwap": st.column_config.NumberColumn("vs VWAP", format="percent", help="Last / VWAP − 1"),
    "last_bar": st.column_config.DatetimeColumn("Last bar (UTC)", format="YYYY-MM-DD HH:mm:ss"),
}


def summary_table(latest: pd.DataFrame) -> pd.DataFrame:
    """`tickstore.queries.latest` shaped for display (one row per symbol)."""
    cols = ["symbol", "last_price", "change", "high", "low", "volume", "quote_volume", "trades", "last_ts"]
    if latest is None or latest.empty:
        return pd.DataFrame(columns=cols).set_index("symbol")
    out = latest[cols].set_index("symbol")
    return out.assign(change=zero_small(out["change"].astype("float64")))


SUMMARY_ROWS = {"Top 20": 20, "Top 50": 50, "Top 100": 100, "All": None}


def search_symbols(frame: pd.DataFrame, query: str | None, column: str | None = None) -> pd.DataFrame:
    """Rows whose symbol contains every space-separated word of `query` (case-insensitive; `column`: where the
    symbol is, default the index)."""
    words = (query or "").upper().split()
    if not words or frame.empty:
        return frame
    names = pd.Series(frame.index if column is None else frame[column], index=frame.index).astype(str).str.upper()
    keep = np.ones(len(frame), dtype=bool)
    for w in words:
        keep &= names.str.contains(w, regex=False).to_numpy()
    return frame.loc[keep]


# the Market summary's orders: (columns, ascending) — ties broken by the next column
SUMMARY_ORDERS = {
    "most 24 h quote volume": (["quote_volume", "trades"], False),
    "most 24 h trades": (["trades", "quote_volume"], False),
    "biggest 24 h gain": (["change", "quote_volume"], False),
    "biggest 24 h loss": (["change", "quote_volume"], [True, False]),
    "symbol A–Z": (None, True),
}


def top_summary(table: pd.DataFrame, query: str | None = None, top: int | None = 20,
                order: str = "most 24 h quote volume") -> pd.DataFrame:
    """`summary_table` rows matching `query` in `order` (a SUMMARY_ORDERS key; default the most active first),
    at most `top`."""
    if table.empty:
        return table
    found = search_symbols(table, query)
    by, ascending = SUMMARY_ORDERS[order]
    found = found.sort_index(kind="stable") if by is None else \
        found.sort_values(by, ascending=ascending, kind="stable", na_position="last")
    return found if top is None else found.head(top)


SUMMARY_COLUMNS = {
    "last_price": st.column_config.NumberColumn("Last", format=PRICE_FORMAT),
    "change": st.column_config.NumberColumn("24h change", format="percent"),
    "high": st.column_config.NumberColumn("24h high", format=PRICE_FORMAT),
    "low": st.column_config.NumberColumn("24h low", format=PRICE_FORMAT),
    "volume": st.column_config.NumberColumn("24h volume", format="compact"),
    "quote_volume": st.column_config.NumberColumn("24h quote volume", format="compact"),
    "trades": st.column_config.NumberColumn("24h trades", format="compact"),
    "last_ts": st.column_config.DatetimeColumn("Last tick (UTC)", format="YYYY-MM-DD HH:mm:ss"),
}


def health_table(status: pd.DataFrame, now: dt.datetime, stored: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ingestion status per symbol with the age of the newest tick: the newer of the status row's last trade and
    the newest tick actually stored (`stored`: the catalog frame with market, symbol, last_ts)."""
    if status is None or status.empty:
        return pd.DataFrame()
    df = status.copy()
    ref = df["last_trade_ts"]
    if stored is not None and not stored.empty:
        last = df[["market", "symbol"]].merge(stored[["market", "symbol", "last_ts"]], how="left")["last_ts"]
        ref = pd.concat([ref.reset_index(drop=True), pd.to_datetime(last, utc=True)], axis=1).max(axis=1)
        ref.index = df.index
    df["last_trade_ts"] = ref
    df["last_tick_age_s"] = (pd.Timestamp(now) - ref).dt.total_seconds()
    df["status_age_s"] = (pd.Timestamp(now) - df["updated_at"]).dt.total_seconds()
    df["problem"] = health_problems(df)
    cols = ["market", "symbol", "problem", "connected", "exchange_status", "last_tick_age_s", "ticks_per_s",
            "ticks_total", "reconnects", "gaps_found", "gaps_filled", "gaps_unrecoverable", "trades_backfilled",
            "last_trade_id", "last_trade_ts", "status_age_s"]
    return df[[c for c in cols if c in df.columns]]


STALE_STATUS_S = 15      # a status row older than this: the ingestor may be stopped
QUIET_TICK_S = 300       # a symbol without a stored tick for this long while connected is called quiet


def health_problems(df: pd.DataFrame) -> pd.Series:
    """What is wrong with each status row, in words ('' when nothing): not trading on the exchange (halted,
    delisted, ...), disconnected, status row 15 s or more behind the freshest one, gaps the exchange could not
    fill, no tick for minutes."""
    n = len(df)

    def col(name, default=np.nan):
        return df[name] if name in df.columns else pd.Series(default, index=df.index)

    ex = col("exchange_status", None).astype(object).where(col("exchange_status", None).notna(), "")
    ex = ex.astype(str).str.strip()
    connected = col("connected", None).astype(object)
    down = ~connected.map(lambda v: v is True or (not pd.isna(v) and bool(v))).astype(bool)
    # behind the freshest row: one stalled connection among live ones (all rows old = the ingestor is stopped,
    # which the page says once above the table, not on every row)
    status_age = pd.to_numeric(col("status_age_s"), errors="coerce")
    status_age = status_age - status_age.min()
    lost = pd.to_numeric(col("gaps_unrecoverable"), errors="coerce").fillna(0).astype(int)
    quiet = pd.to_numeric(col("last_tick_age_s"), errors="coerce")
    parts = [[] for _ in range(n)]
    for i in range(n):
        if ex.iat[i] and ex.iat[i].upper() != "TRADING":
            parts[i].append(f"{ex.iat[i].upper()} on the exchange")
        if down.iat[i]:
            parts[i].append("disconnected")
        if status_age.iat[i] >= STALE_STATUS_S:
            parts[i].append("status stale")
        if lost.iat[i] > 0:
            parts[i].append(f"{lost.iat[i]} unrecoverable gap" + ("s" if lost.iat[i] > 1 else ""))
        q = quiet.iat[i]
        if q >= QUIET_TICK_S:
            parts[i].append(f"no tick for {q / 60:.0f} min" if q < 7200 else f"no tick for {q / 3600:.0f} h")
    return pd.Series([", ".join(p) for p in parts], index=df.index, dtype=object)


def filter_health(table: pd.DataFrame, query: str | None = None, problems_only: bool = False) -> pd.DataFrame:
    """`health_table` rows matching `query` (symbol words), only those with a problem when `problems_only`;
    problems first, then by market and symbol."""
    if table.empty:
        return table
    out = search_symbols(table, query, "symbol")
    if problems_only:
        out = out.loc[out["problem"].astype(bool)]
    order = (~out["problem"].astype(bool)).astype(int)
    return out.assign(_o=order).sort_values(["_o", "market", "symbol"], kind="stable").drop(columns="_o")


EVENT_COLUMNS = {"ts": st.column_config.DatetimeColumn("Time (UTC)", format="YYYY-MM-DD HH:mm:ss")}

HEALTH_COLUMNS = {
    "problem": st.column_config.TextColumn("Problem", width="medium",
                                           help="Not trading on the exchange (halted, delisted), disconnected, status "
                                                "row 15 s behind the others, gaps the exchange could not fill, or no "
                                                "tick stored for 5 minutes"),
    "connected": st.column_config.CheckboxColumn("Connected"),
    "exchange_status": st.column_config.TextColumn("Exchange status",
                                                   help="What the exchange says of the symbol: TRADING, BREAK, "
                                                        "HALT, ... or DELISTED"),
    "last_tick_age_s": st.column_config.NumberColumn("Last tick age (s)", format="%.1f"),
    "ticks_per_s": st.column_config.NumberColumn("Ticks/s", format="%.2f"),
    "ticks_total": st.column_config.NumberColumn("Ticks (session)", format="compact"),
    "reconnects": st.column_config.NumberColumn("Reconnects"),
    "gaps_found": st.column_config.NumberColumn("Gaps found"),
    "gaps_filled": st.column_config.NumberColumn("Gaps filled"),
    "gaps_unrecoverable": st.column_config.NumberColumn("Unrecoverable"),
    "trades_backfilled": st.column_config.NumberColumn("Backfilled", format="compact"),
    "market": st.column_config.TextColumn("Market"),
    "symbol": st.column_config.TextColumn("Symbol"),
    "last_trade_id": st.column_config.NumberColumn("Last trade id", format="%d"),
    "last_trade_ts": st.column_config.DatetimeColumn("Last trade (UTC)", format="YYYY-MM-DD HH:mm:ss.SSS"),
    "status_age_s": st.column_config.NumberColumn("Status age (s)", format="%.1f",
                                                  help="Seconds since the ingestor last wrote this row"),
}


def tests_table(summary) -> pd.DataFrame:
    """`PairSummary.table()` with statistic / p-value as text ('' where a test has no p-value)."""
    df = summary.table().copy()
    df["statistic"] = [("∞" if np.isinf(v) else f"{v:.4g}") if pd.notna(v) else "" for v in df["statistic"]]
    df["p_value"] = [("< 0.001" if v < 0.001 else f"{v:.3f}") if pd.notna(v) else "" for v in df["p_value"]]
    return df


TESTS_COLUMNS = {
    "test": st.column_config.TextColumn("Test"),
    "statistic": st.column_config.TextColumn("Statistic"),
    "p_value": st.column_config.TextColumn("p-value"),
    "verdict": st.column_config.TextColumn("In plain words", width="large"),
}

TRADES_COLUMNS = {
    "window": st.column_config.NumberColumn("Window", format="%d", help="Walk-forward trading window"),
    "entry_time": st.column_config.DatetimeColumn("Entry (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "exit_time": st.column_config.DatetimeColumn("Exit (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "side": st.column_config.TextColumn("Side"),
    "entry_z": st.column_config.NumberColumn("Entry z", format="%.2f"),
    "exit_z": st.column_config.TextColumn("Exit z", help="z at the exit signal; none when the position was closed "
                                                         "because the data (or the walk-forward window) ended"),
    "exit_reason": st.column_config.TextColumn("Exit reason"),
    "beta": st.column_config.NumberColumn("β", format="%.4f"),
    "equity_before": st.column_config.NumberColumn("Equity before", format="%.2f"),
    "gross_pnl": st.column_config.NumberColumn("Gross PnL", format="%.2f"),
    "pnl": st.column_config.NumberColumn("PnL", format="%.2f"),
    "return": st.column_config.NumberColumn("Return", format="percent"),
    "costs": st.column_config.NumberColumn("Costs", format="%.2f"),
    "funding": st.column_config.NumberColumn("Funding", format="%+.2f",
                                             help="Perpetual funding received (+) or paid (−) while the trade was "
                                                  "open"),
    "bars_held": st.column_config.NumberColumn("Bars held", format="%d"),
    "holding_time": st.column_config.TextColumn("Held"),
}
_HIDDEN_TRADE_COLUMNS = ("direction",)


def duration_text(value) -> str:
    """'2 h 05 min', '45 min 10 s', '12 s' ('—' for a missing duration); core.durations words it."""
    if value is None or pd.isna(value):
        return "—"
    return durations.duration_text(pd.Timedelta(value).total_seconds())


def signed(value: float, decimals: int = 2) -> str:
    """'+0.15', '-0.31', and '0.00' for anything that rounds to zero (never '-0.00')."""
    text = f"{value:+.{decimals}f}"
    return f"{0:.{decimals}f}" if float(text) == 0 else text


def trades_table(trades: pd.DataFrame, y: str, x: str) -> tuple[pd.DataFrame, dict]:
    """A backtest's trades for display: legs named by symbol, prices in full, no empty cells (an exit z is
    '—' where the position was closed at the end of the data or window), holding time as text. Returns the
    frame and its column config."""
    df = trades.drop(columns=[c for c in _HIDDEN_TRADE_COLUMNS if c in trades.columns]).copy()
    if "exit_z" in df:
        df["exit_z"] = [signed(v) if pd.notna(v) else "— (closed at end)" for v in df["exit_z"]]
    if "holding_time" in df:
        df["holding_time"] = [duration_text(v) for v in df["holding_time"]]
    if "return" in df:
        df["return"] = zero_small(df["return"].astype("float64"))
    if "beta" in df and df["beta"].isna().all():
        df = df.drop(columns="beta")
    if "funding" in df and (df["funding"] == 0).all():  # no perpetual leg (or no funding time while held)
        df = df.drop(columns="funding")
    config = dict(TRADES_COLUMNS)
    names = {}
    for leg, sym in (("y", y), ("x", x)):
        for kind, title in (("qty", "Qty"), ("entry", "Entry"), ("exit", "Exit")):
            col = f"{kind}_{leg}"
            if col in df:
                names[col] = f"{kind}_{sym}"
                fmt = "%.6g" if kind == "qty" else PRICE_FORMAT
                config[f"{kind}_{sym}"] = st.column_config.NumberColumn(f"{title} {sym}", format=fmt)
    return df.rename(columns=names), config


def money(value: float) -> str:
    """Money in full with thousands separators and cents: 19,880.12 (never 1.988e+04)."""
    return "—" if value is None or not np.isfinite(value) else f"{value:,.2f}"


def _fmt(value, spec: str) -> str:
    """`value` in `spec`; '—' if missing, and a value that rounds to zero unsigned ('0.00%', never '-0.00%')."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    text = format(value, spec)
    unsigned = spec.replace("+", "")
    return format(0.0, unsigned) if text.lstrip("+-") == format(0.0, unsigned) else text


def sharpe_text(stats) -> str:
    """'1.85 [−0.40, 4.10]' (annualized, 95% CI) or 'withheld'."""
    if "sharpe" in stats.withheld:
        return "withheld"
    if not np.isfinite(stats.sharpe):
        return "—"
    return f"{stats.sharpe:,.2f} [{stats.sharpe_ci_low:,.2f}, {stats.sharpe_ci_high:,.2f}]"


def hit_rate_text(stats) -> str:
    """'64%' or, on fewer trades than the rule asks, the count itself: '1 of 1 trade'."""
    if stats.n_trades == 0:
        return "—"
    wins = int(round(stats.hit_rate * stats.n_trades))
    if "hit_rate" in stats.withheld:
        return f"{wins} of {stats.n_trades} trade{'s' if stats.n_trades != 1 else ''}"
    return f"{stats.hit_rate:.0%}"


def backtest_stats(stats) -> pd.DataFrame:
    """`BacktestStats` as a display table (metric, value, note): plain numbers, money with separators, the
    Sharpe with its 95% confidence interval, and each withheld figure with the reason."""
    w = stats.withheld
    rows = [
        ("Total return", _fmt(stats.total_return, "+.2%"), ""),
        ("Sharpe (ann.) [95% CI]", sharpe_text(stats), w.get("sharpe", "95% interval from Lo's standard error with skew and kurtosis (Mertens)")),
        ("Sharpe standard error", "withheld" if "sharpe" in w else _fmt(stats.sharpe_se, ",.2f"), ""),
        ("Max drawdown", _fmt(stats.max_drawdown, ".2%"), ""),
        ("Hit rate", hit_rate_text(stats), w.get("hit_rate", "")),
        ("Trades", f"{stats.n_trades:d}", ""),
        ("Avg holding [bars]", _fmt(stats.avg_holding_bars, ",.1f"), ""),
        ("Avg holding time", duration_text(stats.avg_holding_time), ""),
        ("Time in market", _fmt(stats.exposure, ".1%"), "share of bars with a position"),
        ("Turnover [x capital]", _fmt(stats.turnover, ",.2f"), "traded notional / initial capital"),
        ("Costs paid", money(stats.total_costs), _fmt(stats.costs_fraction, ".2%") + " of capital"),
        ("Bars", f"{stats.n_bars:,d}", ""),
        ("Sample length", duration_text(stats.span), ""),
        ("Bars per year", _fmt(stats.periods_per_year, ",.0f"), "annualized Sharpe = per-bar Sharpe x sqrt(bars per year)"),
    ]
    return pd.DataFrame(rows, columns=["metric", "value", "note"])


THRESHOLD_COLUMNS = {
    "rule": st.column_config.TextColumn("Thresholds", width="medium"),
    "entry_z": st.column_config.NumberColumn("Entry |z|", format="%.2f"),
    "exit_z": st.column_config.NumberColumn("Exit z", format="%.2f",
                                            help="Negative: beyond the mean, on the other side (Bertram's reversal)"),
    "return_per_bar": st.column_config.NumberColumn("Expected spread gain per bar", format="%.6f",
                                                    help="Spread units per bar per unit of Y held, after costs"),
    "bars_per_trade": st.column_config.NumberColumn("Bars per trade", format="%.1f"),
    "trades_per_day": st.column_config.NumberColumn("Trades per day", format="%.1f"),
}

WINDOW_COLUMNS = {
    "window": st.column_config.NumberColumn("Window", format="%d"),
    "formation_start": st.column_config.DatetimeColumn("Formation from (UTC)", format="YYYY-MM-DD HH:mm"),
    "formation_end": st.column_config.DatetimeColumn("to", format="YYYY-MM-DD HH:mm"),
    "trading_start": st.column_config.DatetimeColumn("Trading from (UTC)", format="YYYY-MM-DD HH:mm"),
    "trading_end": st.column_config.DatetimeColumn("to ", format="YYYY-MM-DD HH:mm"),
    "formation_bars": st.column_config.NumberColumn("Formation bars", format="%d"),
    "trading_bars": st.column_config.NumberColumn("Trading bars", format="%d"),
    "alpha": st.column_config.NumberColumn("α", format="%.6g"),
    "beta": st.column_config.NumberColumn("β", format="%.6g"),
    "spread_mean": st.column_config.NumberColumn("Spread mean", format="%.6g"),
    "spread_std": st.column_config.NumberColumn("Spread std", format="%.6g"),
    "trades": st.column_config.NumberColumn("Trades", format="%d"),
    "pnl": st.column_config.NumberColumn("PnL", format="%.2f"),
    "return": st.column_config.NumberColumn("Return", format="percent"),
    "note": st.column_config.TextColumn("Note"),
    "entry_z": st.column_config.NumberColumn("Entry |z| (chosen)", format="%.2f"),
    "exit_z": st.column_config.NumberColumn("Exit |z| (chosen)", format="%.2f"),
    "stop_z": st.column_config.NumberColumn("Stop |z|", format="%.2f"),
}


def walk_forward_windows(windows: pd.DataFrame) -> pd.DataFrame:
    """The per-window table with no empty cells (a window that could not be fitted shows '—' and its note)."""
    df = windows.copy()
    # an OLS formation spread has mean 0 up to float noise (1e-13): shown as 0, not in scientific notation
    tiny = (df["spread_mean"].abs() < 1e-9 * df["spread_std"].abs()).fillna(False)
    df.loc[tiny, "spread_mean"] = 0.0
    if "return" in df:
        df["return"] = zero_small(df["return"].astype("float64"))
    for c in ("alpha", "beta", "spread_mean", "spread_std", *[c for c in df.columns if c.startswith("formation_")
                                                             and c not in ("formation_start", "formation_end",
                                                                           "formation_bars")]):
        df[c] = [plain(v) for v in df[c]]
    return df


def plain(value: float, digits: int = 6) -> str:
    """`digits` significant digits written out in full (no exponent): 0.0624372, -740.91, 15.3301; '—' if missing."""
    if value is None or not np.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - int(np.floor(np.log10(abs(value)))))
    return f"{value:,.{min(decimals, 12)}f}".rstrip("0").rstrip(".") if decimals else f"{value:,.0f}"


def in_out_table(best: pd.Series, withheld_in: str, withheld_out: str | None) -> pd.DataFrame:
    """The in-sample best set beside its out-of-sample result: one row per statistic."""
    def pick(prefix: str, key: str, spec: str, withheld: str | None = None) -> str:
        col = prefix + key
        if col not in best.index:
            return "—"
        if key == "sharpe" and withheld:
            return "withheld"
        return _fmt(float(best[col]), spec)

    rows = []
    for label, key, spec in (("Sharpe (ann.)", "sharpe", ",.2f"), ("Total return", "total_return", "+.2%"),
                             ("Max drawdown", "max_drawdown", ".2%"), ("Hit rate", "hit_rate", ".0%"),
                             ("Trades", "n_trades", ",.0f"), ("Time in market", "exposure", ".1%"),
                             ("Costs paid", "total_costs", ",.2f")):
        rows.append((label, pick("", key, spec, withheld_in), pick("oos_", key, spec, withheld_out)))
    return pd.DataFrame(rows, columns=["statistic", "in sample", "out of sample"])
