"""Column layouts of Binance public-data CSVs (data.binance.vision; binance-protocol.md §4).

Spot files have no header row (the names below are ours); USD-M files carry a header whose names vary, which
`HEADER_ROLES` maps onto one role per column.
"""
from __future__ import annotations

# (market, kind) -> trade / aggTrade CSV columns, in file order.
TRADE_LAYOUTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("spot", "trades"): ("trade_id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"),
    ("spot", "aggTrades"): ("agg_trade_id", "price", "qty", "first_trade_id", "last_trade_id", "transact_time",
                            "is_buyer_maker", "is_best_match"),
    ("usdm", "trades"): ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker"),
    ("usdm", "aggTrades"): ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time",
                            "is_buyer_maker"),
}

# Kline (candlestick) CSV columns, spot and USD-M alike.
KLINE_COLUMNS: tuple[str, ...] = ("open_time", "open", "high", "low", "close", "volume", "close_time",
                                  "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore")

# Header name (ours, Binance's, REST-style single letters) -> the column's role.
HEADER_ROLES: dict[str, str] = {
    "trade_id": "id", "id": "id", "agg_trade_id": "id", "a": "id", "price": "price", "p": "price",
    "qty": "qty", "quantity": "qty", "q": "qty", "quote_qty": "quote_qty", "quote_quantity": "quote_qty",
    "first_trade_id": "first_id", "f": "first_id", "last_trade_id": "last_id", "l": "last_id",
    "time": "time", "transact_time": "time", "timestamp": "time", "t": "time",
    "is_buyer_maker": "is_buyer_maker", "m": "is_buyer_maker", "is_best_match": "is_best_match",
    "best_match": "is_best_match",
}
