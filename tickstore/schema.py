"""DuckDB schema of the tick file: the public interface between processes (see README, "Tables")."""
from __future__ import annotations

import duckdb

from tickstore import symbol_catalog

TICK_COLUMNS = ("market", "symbol", "trade_id", "ts", "price", "qty", "is_buyer_maker", "recv_ts", "source")

DDL = [
    # No primary key on ticks: an ART index over billions of rows would have to be loaded by every
    # short-lived writer connection. Uniqueness is enforced by the writer's anti-join on (ts range, id).
    """CREATE TABLE IF NOT EXISTS ticks(
        market VARCHAR NOT NULL,
        symbol VARCHAR NOT NULL,
        trade_id BIGINT NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        price DOUBLE NOT NULL,
        qty DOUBLE NOT NULL,
        is_buyer_maker BOOLEAN,
        recv_ts TIMESTAMPTZ,
        source VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS ingest_status(
        market VARCHAR NOT NULL,
        symbol VARCHAR NOT NULL,
        connected BOOLEAN,
        last_trade_id BIGINT,
        last_trade_ts TIMESTAMPTZ,
        last_recv_ts TIMESTAMPTZ,
        ticks_total BIGINT,
        ticks_per_s DOUBLE,
        reconnects BIGINT,
        gaps_found BIGINT,
        gaps_filled BIGINT,
        gaps_unrecoverable BIGINT,
        trades_backfilled BIGINT,
        malformed BIGINT,
        duplicates BIGINT,
        updated_at TIMESTAMPTZ,
        PRIMARY KEY (market, symbol))""",
    # what the file holds: key 'data' = 'live' | 'demo' (simulated data never mixes with real data)
    "CREATE TABLE IF NOT EXISTS tickdesk_meta(key VARCHAR PRIMARY KEY, value VARCHAR)",
    "CREATE SEQUENCE IF NOT EXISTS ingest_events_seq",
    """CREATE TABLE IF NOT EXISTS ingest_events(
        id BIGINT DEFAULT nextval('ingest_events_seq'),
        ts TIMESTAMPTZ NOT NULL,
        market VARCHAR,
        symbol VARCHAR,
        kind VARCHAR NOT NULL,
        first_id BIGINT,
        last_id BIGINT,
        count BIGINT,
        detail VARCHAR)""",
    "CREATE SEQUENCE IF NOT EXISTS alert_rules_seq",
    """CREATE TABLE IF NOT EXISTS alert_rules(
        id BIGINT PRIMARY KEY DEFAULT nextval('alert_rules_seq'),
        enabled BOOLEAN NOT NULL DEFAULT TRUE,
        market VARCHAR NOT NULL,
        symbol VARCHAR NOT NULL,
        symbol2 VARCHAR,
        metric VARCHAR NOT NULL,
        timeframe VARCHAR NOT NULL,
        op VARCHAR NOT NULL,
        threshold DOUBLE NOT NULL,
        cooldown_s DOUBLE NOT NULL DEFAULT 60,
        note VARCHAR,
        webhook_url VARCHAR,
        created_at TIMESTAMPTZ DEFAULT current_timestamp,
        updated_at TIMESTAMPTZ DEFAULT current_timestamp)""",
    "CREATE SEQUENCE IF NOT EXISTS alert_events_seq",
    """CREATE TABLE IF NOT EXISTS alert_events(
        id BIGINT DEFAULT nextval('alert_events_seq'),
        rule_id BIGINT NOT NULL,
        fired_at TIMESTAMPTZ NOT NULL,
        value DOUBLE,
        message VARCHAR)""",
    # --- ingest_status: what the exchange says of the symbol ('TRADING', 'BREAK', 'HALT', ..., or 'DELISTED') ---
    "ALTER TABLE ingest_status ADD COLUMN IF NOT EXISTS exchange_status VARCHAR",
    # --- alerts: extra columns, added in place on older files ---
    "ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS hysteresis DOUBLE DEFAULT 0",
    "ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS lookback INTEGER",
    "ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS market VARCHAR",
    "ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS symbol VARCHAR",
    "ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS symbol2 VARCHAR",
    "ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS metric VARCHAR",
    "ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS op VARCHAR",
    "ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS threshold DOUBLE",
    "ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS observed_at TIMESTAMPTZ",  # data time of the value
    "ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS market2 VARCHAR",     # second leg's market when it differs
    "ALTER TABLE alert_events ADD COLUMN IF NOT EXISTS market2 VARCHAR",
    # --- end alerts ---
    # --- basis and funding (usdm): the mark-price stream and the funding-rate history, see tickstore/marks.py ---
    # mark_prices is keyed by (market, symbol, ts) without a primary-key index, like ticks: the index took ~80 bytes
    # a row (1.6 GB for ten days of 23 symbols, 16x the table; docs/bench-marks.md); the writer keeps each key once
    # with an anti-join over the batch's time range. funding_rates is small and has its key.
    """CREATE TABLE IF NOT EXISTS mark_prices(
        market VARCHAR NOT NULL,
        symbol VARCHAR NOT NULL,
        ts TIMESTAMPTZ NOT NULL,           -- event time E of the markPriceUpdate frame
        mark_price DOUBLE NOT NULL,
        index_price DOUBLE,
        funding_rate DOUBLE,               -- the current period's (estimated) funding rate
        next_funding_time TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS funding_rates(
        market VARCHAR NOT NULL,
        symbol VARCHAR NOT NULL,
        funding_time TIMESTAMPTZ NOT NULL,
        funding_rate DOUBLE NOT NULL,
        mark_price DOUBLE,                 -- NULL when REST gives none
        PRIMARY KEY (market, symbol, funding_time))""",
    # --- end basis and funding ---
    # --- history: Parquet archive of old ticks and imported dump files, see tickstore/archive.py ---
    """CREATE TABLE IF NOT EXISTS archive_meta(
        archive_id VARCHAR NOT NULL,
        archive_dir VARCHAR NOT NULL,      -- relative to the tick file's directory when inside it, else absolute
        created_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS archive_files(
        path VARCHAR PRIMARY KEY,          -- relative to the archive directory
        market VARCHAR NOT NULL,
        symbol VARCHAR NOT NULL,
        day DATE NOT NULL,
        rows BIGINT NOT NULL,
        bytes BIGINT,
        first_id BIGINT,
        last_id BIGINT,
        first_ts TIMESTAMPTZ,
        last_ts TIMESTAMPTZ,
        archived_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS import_files(
        sha256 VARCHAR PRIMARY KEY,
        file_name VARCHAR NOT NULL,
        market VARCHAR NOT NULL,
        symbol VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,             -- 'trades' | 'aggTrades'
        rows_total BIGINT NOT NULL,        -- valid rows in the file
        rows_done BIGINT NOT NULL,         -- rows already processed (committed together with the inserts)
        inserted BIGINT NOT NULL,          -- rows that were new
        skipped_invalid BIGINT,
        first_ts TIMESTAMPTZ,
        last_ts TIMESTAMPTZ,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ)""",
    # --- end history ---
]


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table and sequence that does not exist yet (idempotent); rebuild `symbol_catalog` when it
    does not add up (a file written by older code: one scan of the hot ticks)."""
    for stmt in DDL:
        con.execute(stmt)
    symbol_catalog.ensure_catalog(con)
