"""SQL for alerts: rule and event rows, and the small metric queries the alert engine runs after each flush.

Every function takes an open connection (the ingestor's short-lived writer connection, or a read-only /
short write connection from the app) and runs parameterized SQL on the hot `ticks` table. Bar closes follow
the same definitions as `tickstore.queries.BARS_SQL` (epoch-aligned UTC buckets, close = price of the
highest trade id in the bucket).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import duckdb
import numpy as np
import pandas as pd

# Columns of alert_rules a caller may set (id, created_at, updated_at are managed here).
RULE_COLUMNS = ("enabled", "market", "symbol", "symbol2", "metric", "timeframe", "op", "threshold",
                "cooldown_s", "hysteresis", "lookback", "note", "webhook_url", "market2")
EVENT_COLUMNS = ("rule_id", "fired_at", "value", "message", "market", "symbol", "symbol2", "metric", "op",
                 "threshold", "observed_at", "market2")

_RULE_SELECT = "SELECT * FROM alert_rules"


def _rows_as_dicts(cur: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _check_columns(values: Mapping, allowed: Sequence[str]) -> list[str]:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown alert column(s) {', '.join(unknown)}; expected some of {', '.join(allowed)}")
    return [c for c in allowed if c in values]


# ----------------------------------------------------------------------------------------------------- rules

def insert_rule(con: duckdb.DuckDBPyConnection, values: Mapping) -> int:
    """Insert one rule row; returns its id."""
    cols = _check_columns(values, RULE_COLUMNS)
    sql = (f"INSERT INTO alert_rules ({', '.join(cols)}, updated_at) "
           f"VALUES ({', '.join('$' + c for c in cols)}, current_timestamp) RETURNING id")
    return int(con.execute(sql, {c: values[c] for c in cols}).fetchall()[0][0])


def update_rule(con: duckdb.DuckDBPyConnection, rule_id: int, values: Mapping) -> bool:
    """Update the given columns of rule `rule_id` (and its updated_at); False if there is no such rule."""
    cols = _check_columns(values, RULE_COLUMNS)
    if not cols:
        return get_rule(con, rule_id) is not None
    sets = ", ".join(f"{c} = ${c}" for c in cols)
    row = con.execute(f"UPDATE alert_rules SET {sets}, updated_at = current_timestamp WHERE id = $id RETURNING id",
                      {**{c: values[c] for c in cols}, "id": int(rule_id)}).fetchall()
    return bool(row)


def delete_rule(con: duckdb.DuckDBPyConnection, rule_id: int) -> bool:
    """Delete rule `rule_id` (its events stay in the history); False if there is no such rule."""
    return bool(con.execute("DELETE FROM alert_rules WHERE id = $id RETURNING id", {"id": int(rule_id)}).fetchall())


def get_rule(con: duckdb.DuckDBPyConnection, rule_id: int) -> dict | None:
    rows = _rows_as_dicts(con.execute(_RULE_SELECT + " WHERE id = $id", {"id": int(rule_id)}))
    return rows[0] if rows else None


def fetch_rules(con: duckdb.DuckDBPyConnection, enabled_only: bool = False) -> list[dict]:
    """Every rule row as a dict (all columns the file has), ordered by id."""
    sql = _RULE_SELECT + (" WHERE enabled" if enabled_only else "") + " ORDER BY id"
    return _rows_as_dicts(con.execute(sql))


def rules_fingerprint(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(row count, xor of row hashes) over the rule columns: changes whenever any rule row changes.

    Cheap enough to run after every flush; catches edits by tools that do not touch updated_at.
    """
    row = con.execute("SELECT count(*), coalesce(bit_xor(hash(r)), 0) FROM alert_rules r").fetchall()[0]
    return int(row[0]), int(row[1])


# ---------------------------------------------------------------------------------------------------- events

def insert_events(con: duckdb.DuckDBPyConnection, events: Sequence[Mapping]) -> list[int]:
    """Append alert events (dicts with EVENT_COLUMNS keys; missing ones are NULL); returns their ids in order."""
    ids = []
    cols = EVENT_COLUMNS
    sql = (f"INSERT INTO alert_events ({', '.join(cols)}) VALUES ({', '.join('$' + c for c in cols)}) RETURNING id")
    for ev in events:
        _check_columns(ev, cols)
        ids.append(int(con.execute(sql, {c: ev.get(c) for c in cols}).fetchall()[0][0]))
    return ids


def last_fired(con: duckdb.DuckDBPyConnection) -> dict[int, dt.datetime]:
    """Latest firing time per rule id (restores cooldowns across ingestor restarts)."""
    rows = con.execute("SELECT rule_id, max(fired_at) FROM alert_events GROUP BY rule_id").fetchall()
    return {int(r): t for r, t in rows}


def max_event_id(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute("SELECT coalesce(max(id), 0) FROM alert_events").fetchall()[0][0])


def fetch_events(con: duckdb.DuckDBPyConnection, *, after_id: int | None = None, rule_id: int | None = None,
                 symbol: str | None = None, metric: str | None = None, start: dt.datetime | None = None,
                 end: dt.datetime | None = None, limit: int = 1000) -> pd.DataFrame:
    """Alert events, newest first, filtered by any of: id > after_id, rule, symbol (either leg), metric, [start, end)."""
    sql = """SELECT * FROM alert_events
             WHERE ($after_id IS NULL OR id > $after_id)
               AND ($rule_id IS NULL OR rule_id = $rule_id)
               AND ($symbol IS NULL OR symbol = $symbol OR symbol2 = $symbol)
               AND ($metric IS NULL OR metric = $metric)
               AND ($start IS NULL OR fired_at >= $start)
               AND ($end IS NULL OR fired_at < $end)
             ORDER BY id DESC LIMIT $limit"""
    params = {"after_id": after_id, "rule_id": rule_id, "symbol": symbol.upper() if symbol else None,
              "metric": metric, "start": start, "end": end, "limit": int(limit)}
    df = con.execute(sql, params).df()
    for c in ("fired_at", "observed_at"):
        if c in df.columns:
            df[c] = pd.to_datetime(df[c], utc=True)
    return df


# --------------------------------------------------------------------------------------------- metric inputs

def last_trade(con: duckdb.DuckDBPyConnection, market: str, symbol: str, since: dt.datetime
               ) -> tuple[int, dt.datetime, float] | None:
    """(trade_id, ts, price) of the newest stored trade of one symbol with ts >= since, or None."""
    row = con.execute("""SELECT max(trade_id), arg_max(ts, trade_id), arg_max(price, trade_id) FROM ticks
                         WHERE market = $m AND symbol = $s AND ts >= $since""",
                      {"m": market, "s": symbol, "since": since}).fetchall()[0]
    return None if row[0] is None else (int(row[0]), row[1], float(row[2]))


def bar_closes(con: duckdb.DuckDBPyConnection, market: str, symbols: Sequence[str], step_s: int,
               start: dt.datetime, end: dt.datetime | None = None) -> dict[str, np.ndarray]:
    """Close and newest trade time per (symbol, bar) for bars in [start, end), ordered by symbol then bar.

    Numpy arrays (cheap enough to run after every flush): `symbol`, `bucket_us` (bar start, µs since epoch,
    UTC), `close`, `last_us` (time of the bar's newest trade, µs).
    """
    step = int(step_s) * 1_000_000
    sql = """SELECT symbol, (epoch_us(ts) // $step) * $step AS bucket_us,
                    arg_max(price, trade_id) AS close, max(epoch_us(ts)) AS last_us
             FROM ticks
             WHERE market = $m AND list_contains($symbols, symbol) AND ts >= $start AND ($end IS NULL OR ts < $end)
             GROUP BY ALL ORDER BY symbol, bucket_us"""
    rows = con.execute(sql, {"step": step, "m": market, "symbols": list(symbols), "start": start,
                             "end": end}).fetchall()
    if not rows:
        return {"symbol": np.empty(0, object), "bucket_us": np.empty(0, np.int64), "close": np.empty(0),
                "last_us": np.empty(0, np.int64)}
    sym, bucket, close, last = zip(*rows)
    return {"symbol": np.array(sym, dtype=object), "bucket_us": np.array(bucket, dtype=np.int64),
            "close": np.array(close, dtype=np.float64), "last_us": np.array(last, dtype=np.int64)}


def window_activity(con: duckdb.DuckDBPyConnection, market: str, symbol: str, start: dt.datetime
                    ) -> tuple[float, int]:
    """(sum of qty, number of trades) of one symbol with ts >= start."""
    row = con.execute("""SELECT coalesce(sum(qty), 0), count(*) FROM ticks
                         WHERE market = $m AND symbol = $s AND ts >= $start""",
                      {"m": market, "s": symbol, "start": start}).fetchall()[0]
    return float(row[0]), int(row[1])


def status_row(con: duckdb.DuckDBPyConnection, market: str, symbol: str) -> dict | None:
    """The ingestor's ingest_status row of one symbol, or None (no row, or no such table)."""
    try:
        rows = _rows_as_dicts(con.execute("SELECT * FROM ingest_status WHERE market = $m AND symbol = $s",
                                          {"m": market, "s": symbol}))
    except duckdb.CatalogException:
        return None
    return rows[0] if rows else None


def latest_funding(con: duckdb.DuckDBPyConnection, market: str, symbol: str, since: dt.datetime
                   ) -> tuple[dt.datetime, float, dt.datetime | None] | None:
    """(ts, funding_rate, next_funding_time) of the newest mark-price row with a funding rate at or after `since`;
    None when there is none (or the file has no mark_prices table yet)."""
    try:
        row = con.execute("""SELECT ts, funding_rate, next_funding_time FROM mark_prices
                             WHERE market = $m AND symbol = $s AND ts >= $since AND funding_rate IS NOT NULL
                             ORDER BY ts DESC LIMIT 1""", {"m": market, "s": symbol, "since": since}).fetchall()
    except duckdb.CatalogException:
        return None
    return None if not row else (row[0][0], float(row[0][1]), row[0][2])
