"""Table builders for the pages: plain frames with display-ready columns (maths beyond sums stays in quantlib)."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import streamlit as st


# 8 significant digits, trailing zeros dropped (Streamlit's printf "%g" is String(Number(x.toPrecision(8)))):
# 92510.29, 0.71195 and 0.00000723 read as printed; "%.4f" showed sub-cent coins as 0.0000 and "plain" shows
# 20 decimals of float noise (3323.1600000000003).
PRICE_FORMAT = "%.8g"


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
    return pd.DataFrame(rows, columns=cols).set_index("symbol")


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
    return latest[cols].set_index("symbol")


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
    cols = ["market", "symbol", "connected", "last_tick_age_s", "ticks_per_s", "ticks_total", "reconnects",
            "gaps_found", "gaps_filled", "gaps_unrecoverable", "trades_backfilled", "last_trade_id", "last_trade_ts",
            "status_age_s"]
    return df[[c for c in cols if c in df.columns]]


HEALTH_COLUMNS = {
    "connected": st.column_config.CheckboxColumn("Connected"),
    "last_tick_age_s": st.column_config.NumberColumn("Last tick age (s)", format="%.1f"),
    "ticks_per_s": st.column_config.NumberColumn("Ticks/s", format="%.2f"),
    "ticks_total": st.column_config.NumberColumn("Ticks (session)", format="compact"),
    "reconnects": st.column_config.NumberColumn("Reconnects"),
    "gaps_found": st.column_config.NumberColumn("Gaps found"),
    "gaps_filled": st.column_config.NumberColumn("Gaps filled"),
    "gaps_unrecoverable": st.column_config.NumberColumn("Unrecoverable"),
    "trades_backfilled": st.column_config.NumberColumn("Backfilled", format="compact"),
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
    "entry_time": st.column_config.DatetimeColumn("Entry (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "exit_time": st.column_config.DatetimeColumn("Exit (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "entry_z": st.column_config.NumberColumn("Entry z", format="%.2f"),
    "exit_z": st.column_config.NumberColumn("Exit z", format="%.2f"),
    "beta": st.column_config.NumberColumn("β", format="%.4f"),
    "pnl": st.column_config.NumberColumn("PnL", format="%.2f"),
    "return": st.column_config.NumberColumn("Return", format="percent"),
    "costs": st.column_config.NumberColumn("Costs", format="%.2f"),
}


def backtest_stats(stats) -> pd.DataFrame:
    """`BacktestStats.table()` with every value formatted as text (metric, value)."""
    rows = []
    for _, key, title, value in stats.table().itertuples():
        if value is None or (isinstance(value, float) and np.isnan(value)):
            shown = "—"
        elif isinstance(value, pd.Timedelta):
            shown = str(value.round("s")).replace("0 days ", "")
        elif "[%]" in title:
            shown = f"{value:.2f}%"
        elif isinstance(value, (int, np.integer)):
            shown = f"{value:d}"
        else:
            shown = f"{value:,.4g}"
        rows.append((title, shown))
    return pd.DataFrame(rows, columns=["metric", "value"])
