"""REST side of the local exchange: Binance market-data endpoints, request weights, errors.

Every response carries ``X-MBX-USED-WEIGHT-1M`` (weight used in the current UTC minute, counted per
market: ``/api`` and ``/fapi`` separately). Errors are ``{"code": int, "msg": str}`` with Binance's
codes; 429/418 carry ``Retry-After`` (seconds). See ``exchange.server`` for the endpoint list.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import orjson
from aiohttp import web

from exchange.faults import Faults
from exchange.format import dec_strings, rest_aggs, rest_trades
from exchange.funding import FundingBook
from exchange.model import Instrument
from exchange.store import InstrumentHistory

_SYMBOL_RE = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_UINT_RE = re.compile(r"^[0-9]{1,20}$")
_SYMBOLS_RE = re.compile(r'^\[("[A-Z0-9\-_.]{1,20}"(,"[A-Z0-9\-_.]{1,20}"){0,}){0,1}\]$')
_HOUR_US = 3_600_000_000
FUNDING_LIMIT, FUNDING_WINDOW_S = 500, 300.0  # fundingRate (+ fundingInfo): 500 requests / 5 min / IP


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, retry_after: int | None = None):
        super().__init__(msg)
        self.status, self.code, self.msg, self.retry_after = status, code, msg, retry_after


def _bad(code: int, msg: str, status: int = 400) -> ApiError:
    return ApiError(status, code, msg)


@dataclass
class RestCounters:
    requests: Counter = field(default_factory=Counter)  # by path
    statuses: Counter = field(default_factory=Counter)  # by HTTP status
    rate_limited: int = 0  # 429 for exceeding the weight limit
    injected: int = 0  # failures from Faults
    sent_429: int = 0


class RestApi:
    """aiohttp handlers for ``/api/v3/*`` (spot) and ``/fapi/v1/*`` (usdm)."""

    def __init__(self, histories: dict[tuple[str, str], InstrumentHistory], *, markets: tuple[str, ...],
                 faults: Faults, weight_limit: int, funding: FundingBook | None = None):
        self.hist = histories
        self.funding = funding
        self._funding_calls: list[float] = []
        self.markets = markets
        self.faults = faults
        self.weight_limit = weight_limit
        self.counters = RestCounters()
        self._weight: dict[str, tuple[int, int]] = {}
        self.symbols = list(dict.fromkeys(s for _, s in histories))
        self.status: dict[tuple[str, str], str] = {}  # (market, symbol) -> status other than TRADING

    def _listed(self, market: str, symbol: str) -> bool:
        return self.status.get((market, symbol)) != "DELISTED"

    # --- plumbing --------------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        out = []
        if "spot" in self.markets:
            out += [
                self._get("spot", "/api/v3/ping", 1, lambda r, p, m: {}),
                self._get("spot", "/api/v3/time", 1, lambda r, p, m: {"serverTime": _now_ms()}),
                self._get("spot", "/api/v3/exchangeInfo", 20, self._spot_exchange_info),
                self._get("spot", "/api/v3/trades", 25, self._recent_trades),
                self._get("spot", "/api/v3/historicalTrades", 25, self._historical_trades),
                self._get("spot", "/api/v3/aggTrades", 4, self._agg_trades),
                self._get("spot", "/api/v3/ticker/24hr", _spot_ticker_weight, self._ticker_24hr),
            ]
        if "usdm" in self.markets:
            out += [
                self._get("usdm", "/fapi/v1/ping", 1, lambda r, p, m: {}),
                self._get("usdm", "/fapi/v1/time", 1, lambda r, p, m: {"serverTime": _now_ms()}),
                self._get("usdm", "/fapi/v1/exchangeInfo", 1, self._usdm_exchange_info),
                self._get("usdm", "/fapi/v1/trades", 5, self._recent_trades),
                self._get("usdm", "/fapi/v1/historicalTrades", 200, self._historical_trades),
                self._get("usdm", "/fapi/v1/aggTrades", 20, self._agg_trades),
                self._get("usdm", "/fapi/v1/ticker/24hr", lambda q: 1 if "symbol" in q else 40, self._ticker_24hr),
            ]
            if self.funding is not None:
                out.append(self._get("usdm", "/fapi/v1/fundingRate", 1, self._funding_rate))
        return out

    def _get(self, market: str, path: str, weight: int | Callable, fn: Callable) -> web.RouteDef:
        """`weight`: a number, or a function of the query (weights that depend on the parameters)."""
        async def handler(request: web.Request) -> web.Response:
            return self._serve(request, market, path, weight, fn)
        return web.get(path, handler, allow_head=False)

    def _use_weight(self, market: str, weight: int) -> int:
        minute = int(time.time() // 60)
        m, used = self._weight.get(market, (minute, 0))
        used = used + weight if m == minute else weight
        self._weight[market] = (minute, used)
        return used

    def used_weight(self, market: str) -> int:
        m, used = self._weight.get(market, (0, 0))
        return used if m == int(time.time() // 60) else 0

    def _respond(self, status: int, body: object, used: int, retry_after: int | None = None) -> web.Response:
        headers = {"X-MBX-USED-WEIGHT-1M": str(used), "X-MBX-USED-WEIGHT": str(used)}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self.counters.statuses[status] += 1
        if status == 429:
            self.counters.sent_429 += 1
        return web.Response(status=status, body=orjson.dumps(body), headers=headers,
                            content_type="application/json")

    def _serve(self, request: web.Request, market: str, path: str, weight: int | Callable,
               fn: Callable) -> web.Response:
        self.counters.requests[path] += 1
        if callable(weight):
            weight = weight(request.query)
        failure = self.faults.take_rest_failure()
        if failure is not None:
            status, retry = failure
            self.counters.injected += 1
            return self._respond(status, _failure_body(status, retry, self.weight_limit),
                                 self.used_weight(market), retry if status in (418, 429, 503) else None)
        used = self._use_weight(market, weight)
        if used > self.weight_limit:
            self.counters.rate_limited += 1
            retry = max(1, math.ceil(60 - time.time() % 60))
            return self._respond(429, {"code": -1003, "msg": (
                f"Too much request weight used; current limit is {self.weight_limit} request weight per 1 "
                f"MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.")}, used, retry)
        try:
            params = _params(request)
            body = fn(request, params, market)
        except ApiError as exc:
            return self._respond(exc.status, {"code": exc.code, "msg": exc.msg}, used, exc.retry_after)
        return self._respond(200, body, used)

    # --- helpers ---------------------------------------------------------------------------------
    def _history(self, market: str, params: dict[str, str]) -> InstrumentHistory:
        sym = params.get("symbol")
        if not sym:
            raise _bad(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if not _SYMBOL_RE.match(sym):
            raise _bad(-1100, "Illegal characters found in parameter 'symbol'; legal range is "
                              "'^[A-Z0-9-_.]{1,20}$'.")
        h = self.hist.get((market, sym))
        if h is None or not self._listed(market, sym):
            raise _bad(-1121, "Invalid symbol.")
        return h

    # --- endpoints ---------------------------------------------------------------------------------
    def _recent_trades(self, request: web.Request, params: dict[str, str], market: str) -> list[dict]:
        h = self._history(market, params)
        limit = _limit(params, 500, 1000)
        us = _time_unit(request, market)
        view = h.trade_view()
        n = len(view["time"])
        return rest_trades(h.inst, view, max(0, n - limit), n, us)

    def _historical_trades(self, request: web.Request, params: dict[str, str], market: str) -> list[dict]:
        if market == "usdm" and not request.headers.get("X-MBX-APIKEY", "").strip():
            raise _bad(-2014, "API-key format invalid.", status=401)
        h = self._history(market, params)
        limit = _limit(params, 500, 1000) if market == "spot" else _limit(params, 100, 500)
        from_id = _uint(params, "fromId")
        us = _time_unit(request, market)
        view = h.trade_view()
        n = len(view["time"])
        if from_id is None:
            lo = max(0, n - limit)
        else:
            lo = min(max(0, from_id - h.inst.first_trade_id), n)
        return rest_trades(h.inst, view, lo, min(n, lo + limit), us)

    def _agg_trades(self, request: web.Request, params: dict[str, str], market: str) -> list[dict]:
        h = self._history(market, params)
        limit = _limit(params, 500, 1000)
        from_id = _uint(params, "fromId")
        start, end = _time_param(params, "startTime"), _time_param(params, "endTime")
        us = _time_unit(request, market)
        if from_id is not None and (start is not None or end is not None):
            raise _bad(-1128, "Combination of optional parameters invalid. Send either fromId or "
                              "startTime/endTime.")
        if start is not None and end is not None:
            if end < start:
                raise _bad(-1128, "Combination of optional parameters invalid. endTime is before startTime.")
            if market == "usdm" and end - start >= _HOUR_US:
                raise _bad(-1127, "More than 1 hours between startTime and endTime.")
        view = h.agg_view()
        t = view["time"]
        n = len(t)
        if from_id is not None:
            lo = min(max(0, from_id - h.inst.first_agg_id), n)
            hi = min(n, lo + limit)
        elif start is not None:
            lo = int(np.searchsorted(t, start, "left"))
            hi = min(lo + limit, int(np.searchsorted(t, end, "right")) if end is not None else n)
        elif end is not None:
            hi = int(np.searchsorted(t, end, "right"))
            lo = max(0, hi - limit)
        else:
            lo, hi = max(0, n - limit), n
        return rest_aggs(h.inst, view, lo, hi, us)

    def _funding_rate(self, request: web.Request, params: dict[str, str], market: str) -> list[dict]:
        """Settled funding rates, ascending: `symbol` (optional: all symbols), `startTime`/`endTime` (ms, inclusive),
        `limit` (default 100, max 1000). Neither time given: the newest `limit` rows; more rows than `limit` in the
        window: the first `limit` from `startTime` on; only `endTime`: the newest `limit` up to it."""
        now = time.monotonic()
        calls = self._funding_calls = [t for t in self._funding_calls if now - t < FUNDING_WINDOW_S]
        if len(calls) >= FUNDING_LIMIT:
            retry = max(1, math.ceil(FUNDING_WINDOW_S - (now - calls[0])))
            self.counters.rate_limited += 1
            raise ApiError(429, -1003, f"Too many requests; current limit of IP is {FUNDING_LIMIT} requests per 5 "
                                       f"MINUTE for /fapi/v1/fundingRate and /fapi/v1/fundingInfo.", retry)
        calls.append(now)
        if "symbol" in params:
            names = [self._history(market, params).inst.symbol]
        else:
            names = [s for s in self.symbols if (market, s) in self.hist]
        limit = _limit(params, 100, 1000)
        start, end = _time_param(params, "startTime"), _time_param(params, "endTime")
        if start is not None and end is not None and end < start:
            raise _bad(-1128, "Combination of optional parameters invalid. endTime is before startTime.")
        rows = []
        for sym in names:
            t, r, mk = self.funding.history(sym)
            lo = 0 if start is None else int(np.searchsorted(t, start, "left"))
            hi = len(t) if end is None else int(np.searchsorted(t, end, "right"))
            rows += [(int(t[k]), sym, float(r[k]), float(mk[k])) for k in range(lo, hi)]
        rows.sort()
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [{"symbol": sym, "fundingRate": f"{rate:.8f}", "fundingTime": ft // 1000, "markPrice": f"{mark:.8f}"}
                for ft, sym, rate, mark in rows]

    def _selected(self, params: dict[str, str], market: str) -> list[str]:
        sym, syms = params.get("symbol"), params.get("symbols")
        if sym is not None and syms is not None:
            raise _bad(-1128, "Combination of optional parameters invalid. Send either symbol or symbols.")
        if sym is not None:
            if not _SYMBOL_RE.match(sym):
                raise _bad(-1100, "Illegal characters found in parameter 'symbol'; legal range is "
                                  "'^[A-Z0-9-_.]{1,20}$'.")
            names = [sym]
        elif syms is not None:
            if not _SYMBOLS_RE.match(syms):
                raise _bad(-1100, "Illegal characters found in parameter 'symbols'; legal range is "
                                  "'^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.")
            names = orjson.loads(syms)
            if len(set(names)) != len(names):
                raise _bad(-1151, "Symbol is present multiple times in the list.")
        else:
            return [s for s in self.symbols if self._listed(market, s)]
        if any(n not in self.symbols or not self._listed(market, n) for n in names):
            raise _bad(-1121, "Invalid symbol.")
        return names

    def _ticker_24hr(self, request: web.Request, params: dict[str, str], market: str) -> list[dict] | dict:
        """Rolling 24 h statistics from the simulated trades (one object for `symbol=`, else a list)."""
        if market == "usdm" and "symbols" in params:
            raise _bad(-1101, "Too many parameters; expected 'symbol' or none.")
        names = self._selected(params, market)
        now = _now_ms()
        rows = [_ticker(self.hist[(market, s)], now) for s in names if (market, s) in self.hist]
        return rows[0] if "symbol" in params else rows

    def _spot_exchange_info(self, request: web.Request, params: dict[str, str], market: str) -> dict:
        names = self._selected(params, market)
        return {
            "timezone": "UTC", "serverTime": _now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_limit},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [_spot_symbol(self.hist[("spot", s)].inst, self.status.get(("spot", s), "TRADING"))
                        for s in names],
        }

    def _usdm_exchange_info(self, request: web.Request, params: dict[str, str], market: str) -> dict:
        return {
            "timezone": "UTC", "serverTime": _now_ms(), "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_limit},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": [_usdm_symbol(self.hist[("usdm", s)].inst, self.status.get(("usdm", s), "TRADING"))
                        for s in self.symbols if self._listed("usdm", s)],
        }


# --- module helpers -----------------------------------------------------------------------------------

def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _params(request: web.Request) -> dict[str, str]:
    q = request.query
    if len(set(q.keys())) != len(q):
        raise _bad(-1101, "Duplicate values for a parameter detected.")
    return dict(q)


def _uint(params: dict[str, str], name: str) -> int | None:
    v = params.get(name)
    if v is None or v == "":
        return None
    if not _UINT_RE.match(v):
        raise _bad(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(v)


def _limit(params: dict[str, str], default: int, maximum: int) -> int:
    v = _uint(params, "limit")
    if v is None:
        return default
    if not 1 <= v <= maximum:
        raise _bad(-1130, f"Data sent for parameter 'limit' is not valid (1..{maximum}).")
    return v


def _time_param(params: dict[str, str], name: str) -> int | None:
    """A time parameter as µs; values below 10**15 are milliseconds (end bounds are inclusive)."""
    v = _uint(params, name)
    if v is None:
        return None
    if v >= 10**15:
        return v
    return v * 1000 + (999 if name == "endTime" else 0)


def _time_unit(request: web.Request, market: str) -> bool:
    unit = request.headers.get("X-MBX-TIME-UNIT")
    if unit is None or market != "spot":  # USD-M ignores the header (milliseconds only)
        return False
    if unit.upper() not in ("MICROSECOND", "MILLISECOND"):
        raise _bad(-1194, "Invalid value for time unit; expected either MICROSECOND or MILLISECOND.")
    return unit.upper() == "MICROSECOND"


def _failure_body(status: int, retry_after: int, limit: int) -> dict:
    if status == 429:
        return {"code": -1003, "msg": f"Too much request weight used; current limit is {limit} request weight "
                                      f"per 1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                                      f"polling the API."}
    if status == 418:
        until = _now_ms() + retry_after * 1000
        return {"code": -1003, "msg": f"Way too much request weight used; IP banned until {until}. Please use "
                                      f"WebSocket Streams for live updates to avoid bans."}
    if status == 503:
        return {"code": -1008, "msg": "Server is currently overloaded with other requests. Please try again in "
                                      "a few minutes."}
    return {"code": -1000, "msg": "An unknown error occurred while processing the request."}


def _dec(units: int, dec: int) -> str:
    return dec_strings(np.array([units], dtype=np.int64), dec)[0]


def _spot_ticker_weight(query) -> int:
    """Binance's spot ticker/24hr weight: 2 for one symbol (or up to 20), 40 up to 100, else (all) 80."""
    if "symbol" in query:
        return 2
    syms = query.get("symbols")
    if syms is not None:
        n = syms.count(",") + 1
        return 2 if n <= 20 else 40 if n <= 100 else 80
    return 80


def _ticker(h: InstrumentHistory, now_ms: int) -> dict:
    """One ``ticker/24hr`` row (Binance's field names, numbers as strings) over the trades of the last 24 h."""
    inst = h.inst
    view = h.trade_view()
    t = view["time"]
    open_ms, close_ms = now_ms - 86_400_000, now_ms
    lo = int(np.searchsorted(t, open_ms * 1000, "left"))
    price, qty = view["price"][lo:], view["qty"][lo:]
    px, q = 10.0 ** -inst.tick_dec, 10.0 ** -inst.qty_dec
    n = len(price)
    vol = float(qty.sum()) * q
    quote_vol = float(np.dot(price.astype(np.float64), qty.astype(np.float64))) * px * q
    dec = 8 if inst.market == "spot" else inst.price_dec
    qdec = 8 if inst.market == "spot" else inst.qty_str_dec

    def p(x: float) -> str:
        return f"{x:.{dec}f}"

    if n:
        first, last = float(price[0]) * px, float(price[-1]) * px
        hi, low = float(price.max()) * px, float(price.min()) * px
        last_qty = float(qty[-1]) * q
        first_id, last_id = inst.first_trade_id + lo, inst.first_trade_id + len(t) - 1
    else:
        first = last = hi = low = last_qty = 0.0
        first_id = last_id = -1
    row = {
        "symbol": inst.symbol, "priceChange": p(last - first),
        "priceChangePercent": f"{(last / first - 1.0) * 100.0 if first else 0.0:.3f}",
        "weightedAvgPrice": p(quote_vol / vol if vol else 0.0),
    }
    if inst.market == "spot":
        row["prevClosePrice"] = p(float(view["price"][lo - 1]) * px if lo else 0.0)
    row.update({"lastPrice": p(last), "lastQty": f"{last_qty:.{qdec}f}"})
    if inst.market == "spot":  # no order book is simulated: the best bid and ask are the last print, no size
        row.update({"bidPrice": p(last), "bidQty": f"{0:.{qdec}f}", "askPrice": p(last), "askQty": f"{0:.{qdec}f}"})
    row.update({
        "openPrice": p(first), "highPrice": p(hi), "lowPrice": p(low), "volume": f"{vol:.{qdec}f}",
        "quoteVolume": f"{quote_vol:.8f}" if inst.market == "spot" else f"{quote_vol:.2f}",
        "openTime": open_ms, "closeTime": close_ms, "firstId": first_id, "lastId": last_id, "count": n,
    })
    return row


def _spot_symbol(inst: Instrument, status: str = "TRADING") -> dict:
    tick = 10 ** (8 - inst.tick_dec)
    step = 10 ** (8 - inst.qty_dec)
    return {
        "symbol": inst.symbol, "status": status,
        "baseAsset": inst.base, "baseAssetPrecision": 8, "quoteAsset": inst.quote, "quotePrecision": 8,
        "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True, "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True, "cancelReplaceAllowed": True, "amendAllowed": True,
        "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": _dec(tick, 8), "maxPrice": "1000000.00000000",
             "tickSize": _dec(tick, 8)},
            {"filterType": "LOT_SIZE", "minQty": _dec(step, 8), "maxQty": "9000.00000000",
             "stepSize": _dec(step, 8)},
        ],
        "permissions": [], "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _usdm_symbol(inst: Instrument, status: str = "TRADING") -> dict:
    return {
        "symbol": inst.symbol, "pair": inst.symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000, "status": status, "baseAsset": inst.base, "quoteAsset": inst.quote,
        "marginAsset": inst.quote, "pricePrecision": inst.price_dec, "quantityPrecision": inst.qty_str_dec,
        "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [],
        "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": _dec(1, inst.tick_dec), "maxPrice": "4529764",
             "tickSize": _dec(1, inst.tick_dec)},
            {"filterType": "LOT_SIZE", "minQty": _dec(1, inst.qty_dec), "maxQty": "1000",
             "stepSize": _dec(1, inst.qty_dec)},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                       "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }
