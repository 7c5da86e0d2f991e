"""Binance specifics: endpoints, stream names, and frame/REST parsing into `Trade` rows. No I/O here.

Spot ticks are `<symbol>@trade` prints (id = trade id); USD-M ticks are `<symbol>@aggTrade` (id = aggTrade id),
the only trade stream Binance documents for futures. Times arrive in ms (µs when `timeUnit=MICROSECOND`);
both are normalised to integer microseconds since the epoch, UTC.

USD-M connections also carry `<symbol>@markPrice@1s` (parsed into `MarkPrice` rows), and the funding-rate history
comes from REST `/fapi/v1/fundingRate` (`parse_funding_page`). Shapes as documented by Binance
(developers.binance.com/docs/derivatives/usds-margined-futures: websocket-market-streams/Mark-Price-Stream and
market-data/rest-api/Get-Funding-Rate-History; see docs/funding.md):

    {"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","i":"11784.62659091",
     "P":"11784.25641265","r":"0.00038167","T":1562306400000}
    [{"symbol":"BTCUSDT","fundingRate":"-0.03750000","fundingTime":1570608000000,"markPrice":"34287.54619963"}]
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import orjson

from core.plausible import (FUNDING_RATE_MAX, ID_MAX, MAX_AHEAD_US, TS_MAX_US, TS_MIN_US, id_problem, now_us,
                            time_problem, ts_range_problem)


class Trade(NamedTuple):
    """One tick, in `tickstore.schema.TICK_COLUMNS` order (times in µs since the epoch, UTC)."""

    market: str
    symbol: str
    trade_id: int
    ts_us: int
    price: float
    qty: float
    is_buyer_maker: bool
    recv_us: int | None
    source: str


class MarkPrice(NamedTuple):
    """One mark-price update, in `tickstore.marks.MARK_COLUMNS` order (times in µs since the epoch, UTC)."""

    market: str
    symbol: str
    ts_us: int                    # event time E
    mark_price: float
    index_price: float | None
    funding_rate: float | None    # None for a delivery contract (Binance sends "")
    next_funding_us: int | None   # None for a delivery contract (Binance sends 0)


class FundingRate(NamedTuple):
    """One settled funding rate, in `tickstore.marks.FUNDING_COLUMNS` order (time in µs since the epoch, UTC)."""

    market: str
    symbol: str
    funding_time_us: int
    funding_rate: float
    mark_price: float | None      # None when the exchange gives none (old rows carry "")


class MalformedFrame(ValueError):
    """A frame that is not a well-formed Binance message; the message says what was wrong."""


class ImplausibleTrade(MalformedFrame):
    """A well-formed print that cannot be a real trade (time or id out of range, see core.plausible)."""


class ImplausibleMark(MalformedFrame):
    """A well-formed mark-price update or funding row that cannot be real (time, price or rate out of range)."""


@dataclass(frozen=True)
class FundingPage:
    """One REST page of funding rates: the plausible ones, and why the others were rejected."""

    rates: list[FundingRate]
    rejected: list[str]

    def summary(self) -> str:
        return f"{len(self.rates)} funding rates, {len(self.rejected)} rejected" + (
            f" (first: {self.rejected[0]})" if self.rejected else "")


@dataclass(frozen=True)
class RestPage:
    """One REST page of trades: the plausible ones, and why the others were rejected."""

    trades: list[Trade]
    rejected: list[str]

    def summary(self) -> str:
        return f"{len(self.trades)} trades, {len(self.rejected)} rejected" + (
            f" (first: {self.rejected[0]})" if self.rejected else "")


@dataclass(frozen=True)
class MarketSpec:
    name: str
    ws_base: str
    rest_base: str
    stream_path: str           # combined stream path
    stream_kind: str           # 'trade' | 'aggTrade'
    backfill_path: str         # REST path for paging by id
    lookup_path: str           # REST aggTrades path (id at a time)
    exchange_info_path: str
    ping_path: str
    max_streams: int           # Binance's documented streams per connection (docs/binance-limits.md)
    ticker_path: str = ""      # 24 h rolling statistics (quoteVolume), all symbols when no symbol is given
    mark_stream: str = ""      # per-symbol mark-price stream carried next to the trades ('' = none)
    funding_path: str = ""     # REST funding-rate history ('' = none)
    msg_rate: int = 5          # incoming messages per second per connection before Binance disconnects

    @property
    def streams_per_symbol(self) -> int:
        return 2 if self.mark_stream else 1

    def stream_names(self, symbol: str) -> list[str]:
        """The streams one symbol takes on a connection: its trades, and its mark price where the market has one."""
        s = symbol.lower()
        return [f"{s}@{self.stream_kind}"] + ([f"{s}@{self.mark_stream}"] if self.mark_stream else [])


MARKETS = {
    "spot": MarketSpec("spot", "wss://stream.binance.com:9443", "https://api.binance.com", "/stream", "trade",
                       "/api/v3/historicalTrades", "/api/v3/aggTrades", "/api/v3/exchangeInfo", "/api/v3/ping", 1024,
                       "/api/v3/ticker/24hr", msg_rate=5),
    "usdm": MarketSpec("usdm", "wss://fstream.binance.com", "https://fapi.binance.com", "/market/stream", "aggTrade",
                       "/fapi/v1/aggTrades", "/fapi/v1/aggTrades", "/fapi/v1/exchangeInfo", "/fapi/v1/ping", 1024,
                       "/fapi/v1/ticker/24hr", "markPrice@1s", "/fapi/v1/fundingRate", msg_rate=10),
}

# streams per connection unless --streams-per-connection says otherwise: what mature clients use on futures
# (nautilus: 200), a fifth of Binance's 1,024 (docs/binance-limits.md)
DEFAULT_STREAMS_PER_CONNECTION = 200

# /fapi/v1/fundingRate has no request weight of its own: it shares a separate 500 requests / 5 min / IP limit with
# /fapi/v1/fundingInfo (Get-Funding-Rate-History). FUNDING_LIMIT is that limit; the funding backfill keeps under it.
FUNDING_LIMIT = (500, 300.0)
FUNDING_PAGE = 1000   # limit: default 100, max 1000

# REST request weights (binance-protocol.md §3); ticker/24hr as called here, without a symbol (every symbol)
WEIGHTS = {"/api/v3/historicalTrades": 25, "/api/v3/aggTrades": 4, "/api/v3/exchangeInfo": 20, "/api/v3/ping": 1,
           "/api/v3/ticker/24hr": 80,
           "/fapi/v1/aggTrades": 20, "/fapi/v1/exchangeInfo": 1, "/fapi/v1/ping": 1, "/fapi/v1/ticker/24hr": 40,
           "/fapi/v1/fundingRate": 1}


def symbol_streams(spec: MarketSpec, symbol: str) -> list[str]:
    """Every stream name one symbol needs on `spec`'s market, the trades first (`MarketSpec.stream_names`)."""
    return spec.stream_names(symbol)


def combined_url(spec: MarketSpec, streams: list[str], ws_base: str | None = None) -> str:
    """Combined-stream URL carrying `streams` (may be empty: a connection that subscribes by message)."""
    base = (ws_base or spec.ws_base).rstrip("/")
    return f"{base}{spec.stream_path}?streams={'/'.join(streams)}"


def stream_url(spec: MarketSpec, symbols: list[str], ws_base: str | None = None) -> str:
    """Combined-stream URL for all streams of `symbols` on one market."""
    return combined_url(spec, [n for s in symbols for n in symbol_streams(spec, s)], ws_base)


def to_us(t: int) -> int:
    """ms or µs epoch integer → µs (13 digits = ms, 16 = µs)."""
    return t * 1000 if t < 100_000_000_000_000 else t


_loads = orjson.loads
_time_ns = time.time_ns
_new_tuple = tuple.__new__
_INF = float("inf")


def parse_frame(raw: str | bytes, market: str, recv_us: int | None = None) -> Trade | dict | None:
    """One WebSocket text frame → a `Trade`, a control/event dict (`{"e": "serverShutdown"}`, `{"result": ..}`),
    or raises MalformedFrame. Unknown keys are ignored; unknown event types return the dict unchanged."""
    try:
        msg = _loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"not JSON: {str(raw)[:80]!r}") from exc
    if not isinstance(msg, dict):
        raise MalformedFrame(f"expected a JSON object, got {type(msg).__name__}")
    data = msg.get("data", msg)
    if not isinstance(data, dict):
        raise MalformedFrame("'data' is not an object")
    e = data.get("e")
    if e == "trade":
        return _trade(data, market, data.get("t"), recv_us)
    if e == "aggTrade":
        return _trade(data, market, data.get("a"), recv_us)
    if e == "markPriceUpdate":
        return parse_mark(data, market)
    return data


def _num(d: dict, key: str, what: str, optional: bool = False) -> float | None:
    """A decimal-string field as float; None for "" / absent when `optional`."""
    v = d.get(key)
    if optional and (v is None or v == ""):
        return None
    if not isinstance(v, str):
        raise MalformedFrame(f"markPriceUpdate {what} {key!r} is {v!r}, expected a decimal string")
    try:
        return float(v)
    except ValueError:
        raise MalformedFrame(f"markPriceUpdate {what} {key!r} is {v!r}, expected a decimal string") from None


def parse_mark(d: dict, market: str) -> MarkPrice:
    """A `markPriceUpdate` object (E, s, p, i, P, r, T) → MarkPrice. Raises MalformedFrame on a missing or mistyped
    field, ImplausibleMark on values no exchange sends (time out of range, price not positive, |rate| > 10 %)."""
    sym, e_time, nxt = d.get("s"), d.get("E"), d.get("T", 0)
    if not isinstance(sym, str) or not sym:
        raise MalformedFrame(f"markPriceUpdate without symbol: {orjson.dumps(d)[:120]!r}")
    if type(e_time) is not int:
        raise MalformedFrame(f"markPriceUpdate {sym[:40]}: event time E is {e_time!r}, expected an integer")
    if nxt is not None and type(nxt) is not int:
        raise MalformedFrame(f"markPriceUpdate {sym[:40]}: next funding time T is {nxt!r}, expected an integer")
    mark = _num(d, "p", "mark price")
    index = _num(d, "i", "index price", optional=True)
    rate = _num(d, "r", "funding rate", optional=True)
    ts = to_us(e_time)
    nxt_us = to_us(nxt) if nxt else None   # 0: delivery contract, no funding
    problem = (time_problem(ts) or (ts_range_problem(nxt_us) if nxt_us is not None else None)
               or (None if 0.0 < mark < _INF else f"mark price {d.get('p')!r} is not positive and finite")
               or (None if index is None or 0.0 < index < _INF else f"index price {d.get('i')!r} is not positive")
               or (None if rate is None or abs(rate) <= FUNDING_RATE_MAX
                   else f"funding rate {d.get('r')!r} is beyond ±{FUNDING_RATE_MAX:g}"))
    if problem:
        raise ImplausibleMark(f"{sym[:40]} markPriceUpdate: {problem}")
    return MarkPrice(market, sym, ts, mark, index, rate, nxt_us)


def parse_funding_page(rows, market: str, symbol: str) -> FundingPage:
    """REST `/fapi/v1/fundingRate` answer (a list of {symbol, fundingRate, fundingTime, markPrice}) → FundingPage.

    Raises MalformedFrame when the answer is not a list of such objects; rows that cannot be real (another symbol,
    time out of range, |rate| > 10 %, a mark price that is not positive) are left out with a reason. `markPrice`
    "" or absent is kept as None."""
    if not isinstance(rows, list):
        raise MalformedFrame(f"fundingRate: expected a list of rows, got {type(rows).__name__}: {str(rows)[:120]}")
    out, rejected, now = [], [], now_us()
    for r in rows:
        try:
            sym, ft, fr = r["symbol"], r["fundingTime"], r["fundingRate"]
            if type(ft) is not int or not isinstance(fr, str) or not isinstance(sym, str):
                raise TypeError("mistyped field")
            rate = float(fr)
            mp = r.get("markPrice")
            mark = None if mp in (None, "") else float(mp)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedFrame(f"unexpected fundingRate row {str(r)[:200]}: {exc!r}") from None
        t = to_us(ft)
        problem = ((None if sym == symbol else f"row of symbol {sym[:40]!r}, asked for {symbol}")
                   or time_problem(t, now)
                   or (None if abs(rate) <= FUNDING_RATE_MAX else f"funding rate {fr!r} is beyond ±{FUNDING_RATE_MAX:g}")
                   or (None if mark is None or 0.0 < mark < _INF else f"mark price {mp!r} is not positive"))
        if problem:
            rejected.append(f"{symbol} fundingRate row {ft}: {problem}")
        else:
            out.append(FundingRate(market, symbol, t, rate, mark))
    return FundingPage(out, rejected)


def _trade(d: dict, market: str, tid, recv_us: int | None) -> Trade:
    try:
        sym, t, p, q, m = d["s"], d["T"], d["p"], d["q"], d["m"]
        if type(tid) is not int or type(t) is not int or not isinstance(sym, str) or type(m) is not bool:
            raise MalformedFrame(f"bad field types in {d.get('e')} frame: {orjson.dumps(d)[:120]!r}")
        price, qty = float(p), float(q)
    except MalformedFrame:
        raise
    except KeyError as exc:
        raise MalformedFrame(f"{d.get('e')} frame misses field {exc.args[0]!r}") from None
    except (TypeError, ValueError):
        raise MalformedFrame(f"non-numeric price/qty in {d.get('e')} frame: p={d.get('p')!r} q={d.get('q')!r}") from None
    if not (price > 0 and qty >= 0) or price == _INF or qty == _INF:
        raise MalformedFrame(f"price/qty out of range: p={p!r} q={q!r}")
    ts = t * 1000 if t < 100_000_000_000_000 else t
    if not TS_MIN_US <= ts <= _time_ns() // 1000 + MAX_AHEAD_US or ts >= TS_MAX_US:
        raise ImplausibleTrade(f"{sym} {d.get('e')} {tid}: {time_problem(ts)}")
    if not 0 <= tid < ID_MAX:
        raise ImplausibleTrade(f"{sym} {d.get('e')}: {id_problem(tid)}")
    # tuple.__new__ directly: NamedTuple's generated __new__ is a Python call, a third of this function's time
    return _new_tuple(Trade, (market, sym, tid, ts, price, qty, m, recv_us, "ws"))


def parse_rest_trades(rows: list, market: str, symbol: str) -> list[Trade]:
    """REST `historicalTrades`/`trades` (id, price, qty, time, isBuyerMaker) or `aggTrades` (a, p, q, T, m) → Trades.

    Raises MalformedFrame on a row of the wrong shape; rows that cannot be real trades are left out
    (`parse_rest_page` says which)."""
    return parse_rest_page(rows, market, symbol).trades


def parse_rest_page(rows: list, market: str, symbol: str) -> RestPage:
    """Like `parse_rest_trades`, keeping the reasons for the rows left out (time or id out of range, bad price)."""
    out, rejected, now = [], [], now_us()
    for r in rows:
        try:
            if "id" in r:
                t = Trade(market, symbol, int(r["id"]), to_us(int(r["time"])), float(r["price"]), float(r["qty"]),
                          bool(r["isBuyerMaker"]), None, "rest")
            else:
                t = Trade(market, symbol, int(r["a"]), to_us(int(r["T"])), float(r["p"]), float(r["q"]),
                          bool(r["m"]), None, "rest")
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedFrame(f"unexpected REST trade row {r!r}: {exc}") from None
        problem = (time_problem(t.ts_us, now) or id_problem(t.trade_id)
                   or (None if 0 < t.price < _INF and 0 <= t.qty < _INF else f"price/qty out of range: {t.price}/{t.qty}"))
        if problem:
            rejected.append(f"{symbol} REST row {r.get('id', r.get('a'))}: {problem}")
        else:
            out.append(t)
    return RestPage(out, rejected)


def parse_ticker_volumes(rows) -> dict[str, float]:
    """`ticker/24hr` answer (a list of rows, or one row) → {symbol: 24 h quoteVolume}.

    Raises MalformedFrame when a row lacks `symbol`/`quoteVolume` or the volume is not a finite number >= 0."""
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list):
        raise MalformedFrame(f"ticker/24hr: expected a list of rows, got {type(rows).__name__}")
    out: dict[str, float] = {}
    for r in rows:
        try:
            sym, vol = r["symbol"], float(r["quoteVolume"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedFrame(f"unexpected ticker/24hr row {str(r)[:200]}: {exc!r}") from None
        if not isinstance(sym, str) or not 0.0 <= vol < _INF:
            raise MalformedFrame(f"ticker/24hr row {sym!r}: quoteVolume {r['quoteVolume']!r} is not a volume")
        out[sym] = vol
    return out
