"""Binance JSON shapes of the local exchange: WebSocket payloads and REST rows.

Prices and quantities are kept as integers (ticks, lot steps) and printed exactly as decimal strings:
spot with 8 decimals (``"93576.01000000"``), USD-M with the symbol's precision (``"68402.60"``,
``"0.024"``). ``us=True`` prints times in microseconds (``timeUnit=MICROSECOND``), else milliseconds.
"""

from __future__ import annotations

import numpy as np

from exchange.model import Batch, Instrument


def dec_strings(units: np.ndarray, dec: int) -> list[str]:
    """Integers in units of ``10**-dec`` as fixed-point strings."""
    if dec == 0:
        return [str(u) for u in units.tolist()]
    d = 10**dec
    return [f"{u // d}.{u % d:0{dec}d}" for u in units.tolist()]


def price_strings(inst: Instrument, ticks: np.ndarray) -> list[str]:
    return dec_strings(ticks.astype(np.int64) * 10 ** (inst.price_dec - inst.tick_dec), inst.price_dec)


def qty_strings(inst: Instrument, steps: np.ndarray) -> list[str]:
    return dec_strings(steps.astype(np.int64) * 10 ** (inst.qty_str_dec - inst.qty_dec), inst.qty_str_dec)


def quote_qty_strings(inst: Instrument, ticks: np.ndarray, steps: np.ndarray) -> list[str]:
    """Exact price * qty, trailing zeros stripped (``"48.000012"``)."""
    out = []
    for s in dec_strings(ticks.astype(np.int64) * steps.astype(np.int64), inst.tick_dec + inst.qty_dec):
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        out.append(s)
    return out


def _times(t_us: np.ndarray, us: bool) -> list[int]:
    return (t_us if us else t_us // 1000).tolist()


# --- WebSocket payloads (text of the "data" object) --------------------------------------------------

def ws_trade_payloads(b: Batch, event_time: int, us: bool) -> list[str]:
    inst = b.instrument
    e = event_time if us else event_time // 1000
    p, q, t = price_strings(inst, b.trade_price), qty_strings(inst, b.trade_qty), _times(b.trade_time, us)
    ids = range(b.first_trade_id, b.first_trade_id + b.n_trades)
    m = ["true" if x else "false" for x in b.trade_m.tolist()]
    if inst.market == "spot":
        fmt = '{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"%s","T":%d,"m":%s,"M":true}'
        return [fmt % (e, inst.symbol, i, pp, qq, tt, mm) for i, pp, qq, tt, mm in zip(ids, p, q, t, m)]
    fmt = '{"e":"trade","E":%d,"T":%d,"s":"%s","t":%d,"p":"%s","q":"%s","X":"MARKET","m":%s}'
    return [fmt % (e, tt, inst.symbol, i, pp, qq, mm) for i, pp, qq, tt, mm in zip(ids, p, q, t, m)]


def ws_agg_payloads(b: Batch, event_time: int, us: bool) -> list[str]:
    inst = b.instrument
    e = event_time if us else event_time // 1000
    p, q, t = price_strings(inst, b.agg_price), qty_strings(inst, b.agg_qty), _times(b.agg_time, us)
    ids = range(b.first_agg_id, b.first_agg_id + b.n_aggs)
    f, last = b.agg_first.tolist(), b.agg_last.tolist()
    m = ["true" if x else "false" for x in b.agg_m.tolist()]
    if inst.market == "spot":
        fmt = '{"e":"aggTrade","E":%d,"s":"%s","a":%d,"p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%s,"M":true}'
        return [fmt % (e, inst.symbol, a, pp, qq, ff, ll, tt, mm)
                for a, pp, qq, ff, ll, tt, mm in zip(ids, p, q, f, last, t, m)]
    nq = qty_strings(inst, b.agg_nq)
    fmt = '{"e":"aggTrade","E":%d,"s":"%s","a":%d,"p":"%s","q":"%s","nq":"%s","f":%d,"l":%d,"T":%d,"m":%s}'
    return [fmt % (e, inst.symbol, a, pp, qq, nn, ff, ll, tt, mm)
            for a, pp, qq, nn, ff, ll, tt, mm in zip(ids, p, q, nq, f, last, t, m)]


def with_bad_price(payload: str, bad: str = "12x.3.4") -> str:
    """The same payload with a non-numeric ``"p"`` value (fault injection)."""
    i = payload.find('"p":"')
    if i < 0:
        return payload
    j = payload.find('"', i + 5)
    return payload[: i + 5] + bad + payload[j:]


# --- REST rows ----------------------------------------------------------------------------------------

def rest_trades(inst: Instrument, view: dict[str, np.ndarray], lo: int, hi: int, us: bool) -> list[dict]:
    """Rows ``lo:hi`` of the trade table as ``/api/v3/historicalTrades`` / ``/fapi/v1/trades`` dicts."""
    price, qty = view["price"][lo:hi], view["qty"][lo:hi]
    p, q, qq = price_strings(inst, price), qty_strings(inst, qty), quote_qty_strings(inst, price, qty)
    t = _times(view["time"][lo:hi], us)
    m = view["m"][lo:hi].tolist()
    ids = range(inst.first_trade_id + lo, inst.first_trade_id + hi)
    if inst.market == "spot":
        return [{"id": i, "price": a, "qty": b, "quoteQty": c, "time": d, "isBuyerMaker": e, "isBestMatch": True}
                for i, a, b, c, d, e in zip(ids, p, q, qq, t, m)]
    rpi = view["rpi"][lo:hi].tolist()
    return [{"id": i, "price": a, "qty": b, "quoteQty": c, "time": d, "isBuyerMaker": e, "isRPITrade": r}
            for i, a, b, c, d, e, r in zip(ids, p, q, qq, t, m, rpi)]


def rest_aggs(inst: Instrument, view: dict[str, np.ndarray], lo: int, hi: int, us: bool) -> list[dict]:
    """Rows ``lo:hi`` of the aggTrade table as ``aggTrades`` dicts (spot has ``M``, usdm has ``nq``)."""
    p, q = price_strings(inst, view["price"][lo:hi]), qty_strings(inst, view["qty"][lo:hi])
    t = _times(view["time"][lo:hi], us)
    f, last, m = view["first"][lo:hi].tolist(), view["last"][lo:hi].tolist(), view["m"][lo:hi].tolist()
    ids = range(inst.first_agg_id + lo, inst.first_agg_id + hi)
    if inst.market == "spot":
        return [{"a": a, "p": pp, "q": qq, "f": ff, "l": ll, "T": tt, "m": mm, "M": True}
                for a, pp, qq, ff, ll, tt, mm in zip(ids, p, q, f, last, t, m)]
    nq = qty_strings(inst, view["nq"][lo:hi])
    return [{"a": a, "p": pp, "q": qq, "nq": nn, "f": ff, "l": ll, "T": tt, "m": mm}
            for a, pp, qq, nn, ff, ll, tt, mm in zip(ids, p, q, nq, f, last, t, m)]
