"""Which symbols to stream: `--top N`, the most traded USDT symbols of a market by 24 h quote volume."""
from __future__ import annotations

from dataclasses import dataclass

from feed.binance import MarketSpec, MalformedFrame, parse_ticker_volumes
from feed.rest import RestClient

QUOTE = "USDT"


@dataclass(frozen=True)
class TopSelection:
    """The chosen symbols: the `n` most traded (by quote volume, highest first), then `extra` not among them."""

    market: str
    n: int
    top: list[str]
    extra: list[str]
    eligible: int  # USDT symbols in TRADING status that the ticker reported

    @property
    def symbols(self) -> list[str]:
        return self.top + self.extra

    def summary(self) -> str:
        short = f" (only {self.eligible} eligible)" if len(self.top) < self.n else ""
        more = f" + {len(self.extra)} from --symbols" if self.extra else ""
        return f"--top {self.n} on {self.market}: {len(self.top)} USDT symbols by 24 h quote volume{short}{more}"


def select_top(info_symbols: list[dict], volumes: dict[str, float], n: int, market: str = "spot",
               extra: list[str] | tuple[str, ...] = ()) -> TopSelection:
    """Rank exchangeInfo's TRADING, USDT-quoted symbols by `volumes` (ties by name); keep `n`, add `extra`."""
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    eligible = {s.get("symbol") for s in info_symbols
                if isinstance(s, dict) and s.get("status") == "TRADING" and s.get("quoteAsset") == QUOTE}
    ranked = sorted((sym for sym in volumes if sym in eligible), key=lambda sym: (-volumes[sym], sym))
    top = ranked[:n]
    chosen = set(top)
    rest = [s for s in dict.fromkeys(extra) if s not in chosen]
    return TopSelection(market, n, top, rest, len(ranked))


def top_symbols(rest: RestClient, spec: MarketSpec, n: int, extra: list[str] | tuple[str, ...] = ()) -> TopSelection:
    """Fetch exchangeInfo and the all-symbol 24 h ticker of `spec`'s market, then `select_top`.

    Raises feed.rest.RestError when a call fails, MalformedFrame when an answer has the wrong shape."""
    info = rest.get(spec.exchange_info_path, retry=False)
    if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
        raise MalformedFrame(f"{rest.base}{spec.exchange_info_path} did not answer like Binance's exchangeInfo")
    volumes = parse_ticker_volumes(rest.get(spec.ticker_path, retry=False))
    return select_top(info["symbols"], volumes, n, spec.name, extra)
