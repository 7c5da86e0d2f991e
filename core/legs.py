"""A pair leg: a symbol of one market, written `market:SYMBOL` (e.g. `usdm:BTCUSDT`) or, in the context of a
default market, the bare symbol (`BTCUSDT` = that market's BTCUSDT; the form URLs and CLIs used before legs
could come from different markets).

Labels: the legs of one view are named by bare symbol when they all come from one market, else every one by
`market:SYMBOL` (spot and perpetual BTCUSDT side by side need both names).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core import symbols

SEP = ":"
MARKET_PATTERN = r"[a-z][a-z0-9_]{1,19}"
EXPECTED = "a symbol such as BTCUSDT, or market:SYMBOL such as usdm:BTCUSDT"
_MARKET_RE = re.compile(MARKET_PATTERN)


class LegError(ValueError):
    """Text that is not a leg; the message says what is expected."""


@dataclass(frozen=True, order=True)
class Leg:
    market: str
    symbol: str

    @property
    def key(self) -> str:
        """`market:SYMBOL`."""
        return f"{self.market}{SEP}{self.symbol}"

    def label(self, qualified: bool) -> str:
        return self.key if qualified else self.symbol

    def __str__(self) -> str:
        return self.key


def parse_leg(text: str, default_market: str) -> Leg:
    """'usdm:btcusdt' → Leg('usdm', 'BTCUSDT'); 'btcusdt' → Leg(default_market, 'BTCUSDT'). LegError otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise LegError(f"no leg given; expected {EXPECTED}")
    raw = text.strip()
    market, sep, sym = raw.rpartition(SEP)
    market = market.strip().lower() if sep else default_market
    sym = sym.strip().upper()
    if sep and not _MARKET_RE.fullmatch(market):
        raise LegError(f"{raw!r}: {market!r} is not a market name; expected {EXPECTED}")
    if not symbols.is_symbol(sym):
        raise LegError(f"{raw!r} is not a leg; expected {EXPECTED}")
    return Leg(market, sym)


def parse_legs(text: str, default_market: str) -> list[Leg]:
    """'btcusdt, usdm:btcusdt' → legs in order, duplicates dropped; LegError naming the bad ones."""
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    if not parts:
        raise LegError(f"no legs given; expected a comma-separated list of {EXPECTED}")
    legs, bad = [], []
    for p in parts:
        try:
            legs.append(parse_leg(p, default_market))
        except LegError:
            bad.append(p)
    if bad:
        raise LegError(f"bad leg(s) {', '.join(bad)}; expected {EXPECTED}")
    return list(dict.fromkeys(legs))


def qualified(legs: Iterable[Leg]) -> bool:
    """True when the legs come from more than one market (so they are named `market:SYMBOL`)."""
    return len({leg.market for leg in legs}) > 1


def labels(legs: Sequence[Leg]) -> list[str]:
    """Column names for `legs`: bare symbols when one market, else `market:SYMBOL` for each."""
    q = qualified(legs)
    return [leg.label(q) for leg in legs]


def short(leg: Leg, default_market: str) -> str:
    """The shortest text naming `leg` next to `default_market`: the bare symbol when it is of that market."""
    return leg.symbol if leg.market == default_market else leg.key
