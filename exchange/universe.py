"""The simulated universe of the local exchange: which symbols it knows and how their prices are related.

Every known symbol has a ``Spec``; ``exchange.model`` turns it into a latent log-price path (see its docstring).
``demo_symbols(market)`` is the set ``ingestor.py --demo`` streams when no ``--symbols`` are given: 24 spot
symbols (23 on usdm) that make a screen worth running. The design, in 1-minute bars:

* **market factor** ``f``: the BTC log price, 60 % annualised. Every symbol except the stablecoin loads on it,
  so most pairs have return correlations of 0.3-0.6 without being cointegrated.
* **cointegrated pairs** (``log Y = c + beta log X + OU``; ``PAIRS``): LTC/BCH (half-life 1 min, beta 1.0),
  AVAX/SOL (2 min, 1.4), ETH/BTC (3 min, 1.15, as before), DOT/ATOM (5 min, 0.6) and UNI/LINK (10 min,
  0.8). The OU sds (0.08-0.15 %) keep a minute's spread move below the legs' own random-walk move, so
  pairs of one such leg with an unrelated coin still look like random walks to a unit-root test. How much
  data finds them: an Engle-Granger test needs a window of roughly 40-100 half-lives to reject at the level
  a Benjamini-Hochberg screen of 276 pairs asks for (p below ~1e-3), so all five show up in a day of 1m
  bars, the fast ones in 6-12 h; in 2 h usually only LTC/BCH (hence the demo pre-loads 24 h, older
  hours thinned smoothly).
* **look-alikes** (``LOOKALIKES``): OP/ARB, ADA/XRP and SUI/APT have 1m return correlations of about 0.975
  (about 0.95 on the demo's bar closes), but ``log Y - beta log X`` is a random walk (small, independent
  increments): never cointegrated.
* **factor-only** symbols (BNB, XRP, DOGE, TRX, TON, NEAR, APT, ARB, SHIB, PEPE and the anchors BTC, SOL,
  BCH, ATOM, LINK): factor plus an independent random walk each.
* **stablecoin** FDUSDUSDT: pegged near 0.9985 (OU, half-life 20 min, 3 bp), no factor. It is stationary on
  its own, so a regression of it on anything has a stationary residual (a classic screening trap), and
  prices move by single ticks (0.0001).

Prices start near Binance's late-2025 levels with Binance-like tick and lot sizes (sub-cent SHIB and PEPE
trade with 8 decimals; on usdm they are the ``1000SHIBUSDT`` / ``1000PEPEUSDT`` contracts, and FDUSD has no
perpetual). ``rate_scale`` makes the majors (BTC, ETH, SOL, BNB) trade at the full rate, the look-alikes'
legs at 0.4 of it (so that their bar closes stay near-identical) and the rest at a tenth. Symbols not listed
here still work: they get a random price and factor loading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FACTOR = ""  # anchor name of the market factor
MAJORS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
MINOR_RATE = 0.1  # rate of a non-major demo symbol, relative to the majors'
TWIN_RATE = 0.4  # the look-alikes' legs: a print every ~0.5 s keeps their 1m bar closes within ~0.95 correlation


@dataclass(frozen=True)
class Spec:
    """How one symbol's latent log price is made: ``log P = log price + beta * (log A - log A0) + w``.

    ``anchor`` is the symbol A (``FACTOR``: the market factor itself). ``w`` is an Ornstein-Uhlenbeck spread
    (half-life ``half_life`` s, stationary sd ``spread_sd``) when ``half_life > 0`` - Y is then cointegrated
    with A - else an independent random walk sized so that 1m returns correlate ``corr`` with beta * A's.
    ``ticks``: (spot tick decimals, spot lot decimals, usdm tick decimals, usdm price decimals, usdm lot
    decimals), or None for the rule used for unknown symbols.
    """

    price: float
    beta: float = 1.0
    anchor: str = FACTOR
    corr: float = 1.0
    half_life: float = 0.0
    spread_sd: float = 0.0
    ticks: tuple[int, int, int, int, int] | None = None
    rate_scale: float = MINOR_RATE
    role: str = "factor"  # 'factor' | 'pair' | 'lookalike' | 'peg' (documentation and tests)


def _factor(price, beta, corr, ticks=None, rate=MINOR_RATE):
    return Spec(price, beta, FACTOR, corr, ticks=ticks, rate_scale=rate)


def _pair(price, anchor, beta, half_life, sd, ticks=None, rate=MINOR_RATE):
    return Spec(price, beta, anchor, 0.0, half_life, sd, ticks, rate, "pair")


def _lookalike(price, anchor, beta, corr=0.975):
    return Spec(price, beta, anchor, corr, rate_scale=TWIN_RATE, role="lookalike")


SPECS: dict[str, Spec] = {
    # majors (existing behaviour: BTC is the factor, ETH cointegrated with it, SOL and BNB factor-only)
    "BTCUSDT": _factor(93_000.0, 1.0, 1.0, (2, 5, 1, 2, 3), rate=1.0),
    "ETHUSDT": _pair(3_300.0, "BTCUSDT", 1.15, 180.0, 0.0015, (2, 4, 2, 2, 3), rate=1.0),
    "SOLUSDT": _factor(180.0, 1.3, 0.75, (2, 3, 2, 4, 0), rate=1.0),
    "BNBUSDT": _factor(650.0, 0.8, 0.6, (2, 3, 2, 3, 2), rate=1.0),
    # factor-only
    "XRPUSDT": _factor(2.2, 1.2, 0.6, rate=TWIN_RATE),
    "DOGEUSDT": _factor(0.22, 1.5, 0.6),
    "TRXUSDT": _factor(0.28, 0.6, 0.4),
    "TONUSDT": _factor(3.1, 0.9, 0.5),
    "NEARUSDT": _factor(2.6, 1.4, 0.6),
    "APTUSDT": _factor(5.0, 1.4, 0.6, rate=TWIN_RATE),
    "ARBUSDT": _factor(0.40, 1.5, 0.6, rate=TWIN_RATE),
    "SHIBUSDT": _factor(0.0000125, 1.5, 0.55),
    "PEPEUSDT": _factor(0.0000072, 1.9, 0.5),
    "BCHUSDT": _factor(480.0, 1.1, 0.6),
    "ATOMUSDT": _factor(4.5, 1.2, 0.6),
    "LINKUSDT": _factor(15.0, 1.3, 0.65),
    # cointegrated with their anchor
    "LTCUSDT": _pair(90.0, "BCHUSDT", 1.0, 60.0, 0.0008),
    "AVAXUSDT": _pair(24.0, "SOLUSDT", 1.4, 120.0, 0.0012),
    "DOTUSDT": _pair(4.2, "ATOMUSDT", 0.6, 300.0, 0.001),
    "UNIUSDT": _pair(8.0, "LINKUSDT", 0.8, 600.0, 0.0015),
    # look-alikes: near-identical movers, spread a random walk
    "OPUSDT": _lookalike(0.55, "ARBUSDT", 1.0),
    "ADAUSDT": _lookalike(0.70, "XRPUSDT", 0.9),
    "SUIUSDT": _lookalike(2.8, "APTUSDT", 1.1),
    # stablecoin: pegged, no factor
    "FDUSDUSDT": Spec(0.9985, 0.0, FACTOR, 0.0, 1200.0, 0.0003, (4, 0, 4, 4, 0), role="peg"),
    # usdm contracts of the sub-cent coins (1000 units per contract): the same path, scaled
    "1000SHIBUSDT": Spec(0.0125, 1.0, "SHIBUSDT", 1.0, ticks=(6, 0, 6, 6, 0)),
    "1000PEPEUSDT": Spec(0.0072, 1.0, "PEPEUSDT", 1.0, ticks=(7, 0, 7, 7, 0)),
}

_DEMO = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT", "LINKUSDT",
         "DOTUSDT", "LTCUSDT", "BCHUSDT", "TRXUSDT", "TONUSDT", "NEARUSDT", "ATOMUSDT", "UNIUSDT", "APTUSDT",
         "SUIUSDT", "ARBUSDT", "OPUSDT", "SHIBUSDT", "PEPEUSDT", "FDUSDUSDT")
_USDM = {"SHIBUSDT": "1000SHIBUSDT", "PEPEUSDT": "1000PEPEUSDT", "FDUSDUSDT": None}

# (y, x, beta, half-life in minutes): log y = c + beta log x + OU
PAIRS = tuple((s, sp.anchor, sp.beta, sp.half_life / 60.0) for s, sp in SPECS.items() if sp.role == "pair")
# (y, x, beta): 1m returns correlate ~0.97, spread a random walk
LOOKALIKES = tuple((s, sp.anchor, sp.beta) for s, sp in SPECS.items() if sp.role == "lookalike")
STABLE = tuple(s for s, sp in SPECS.items() if sp.role == "peg")


def demo_symbols(market: str = "spot") -> tuple[str, ...]:
    """The demo universe of ``market`` ('spot' or 'usdm'), majors first."""
    if market == "spot":
        return _DEMO
    return tuple(_USDM.get(s, s) for s in _DEMO if _USDM.get(s, s))


def rate_scale(symbol: str) -> float:
    """Demo trade rate of ``symbol`` relative to the majors' (1.0 for symbols outside the universe)."""
    spec = SPECS.get(symbol)
    return 1.0 if spec is None else spec.rate_scale


def anchors_of(symbol: str) -> list[str]:
    """The chain of anchors ``symbol`` depends on, nearest first (empty for factor symbols and unknown ones)."""
    out: list[str] = []
    spec = SPECS.get(symbol)
    while spec is not None and spec.anchor != FACTOR:
        out.append(spec.anchor)
        spec = SPECS[spec.anchor]
    return out


def latent_vol(symbol: str, factor_vol: float) -> float:
    """Random-walk volatility (per sqrt second) of the symbol's long-run log price; 0 for the stablecoin."""
    spec = SPECS[symbol]
    base = factor_vol if spec.anchor == FACTOR else latent_vol(spec.anchor, factor_vol)
    trend = abs(spec.beta) * base
    if spec.half_life > 0 or spec.corr >= 1.0:
        return trend
    return trend / spec.corr


def idio_vol(symbol: str, factor_vol: float) -> float:
    """Volatility of the independent random-walk part ``w`` (0 for pairs, the peg and pure copies)."""
    spec = SPECS[symbol]
    if spec.half_life > 0 or not 0.0 < spec.corr < 1.0:
        return 0.0
    base = factor_vol if spec.anchor == FACTOR else latent_vol(spec.anchor, factor_vol)
    return abs(spec.beta) * base * math.sqrt(1.0 / spec.corr**2 - 1.0)


# --- universe mode: hundreds of symbols with a realistic skew ----------------------------------------------------

ZIPF_EXPONENT = 1.1  # rate of the k-th busiest symbol ~ 1 / k**1.1: at 1,000 symbols the top 10 carry ~half
# Binance USDT pairs (late 2025) that follow the demo universe, roughly by activity; none sub-cent, so the same name
# trades on spot and usdm. Beyond them the universe uses synthetic names ``X0101USDT`` ...
_MORE = ("FIL", "ICP", "ETC", "XLM", "HBAR", "WLD", "INJ", "SEI", "TIA", "AAVE", "FET", "RENDER", "TAO", "ENA",
         "WIF", "JUP", "PYTH", "STX", "IMX", "GRT", "LDO", "CRV", "ORDI", "PENDLE", "ALGO", "VET", "EOS", "SAND",
         "MANA", "AXS", "GALA", "APE", "CHZ", "EGLD", "FLOW", "XTZ", "NEO", "THETA", "KAVA", "ZEC", "DASH", "IOTA",
         "RUNE", "ROSE", "CFX", "BLUR", "JTO", "STRK", "ZK", "DYDX", "GMX", "ARKM", "TRB", "MASK", "SNX", "COMP",
         "SUSHI", "YFI", "BAT", "ZRX", "KSM", "QNT", "CELO", "ANKR", "LRC", "ICX", "ONT", "SKL", "STORJ", "AR",
         "MKR", "ENS", "ID", "CAKE", "ZIL", "ONE")


def universe_symbols(n: int, market: str = "spot") -> tuple[str, ...]:
    """The ``n`` most active symbols of the simulated whole market (``--universe N``), busiest first: the demo
    universe (``demo_symbols(market)``: its majors, cointegrated pairs, look-alikes, stablecoin), then more real
    USDT pairs, then synthetic ones (random price and factor loading, see ``exchange.model.symbol_model``)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"universe size must be a whole number >= 1, got {n!r}")
    head = list(demo_symbols(market))
    head += [b + "USDT" for b in _MORE]
    i = 0
    while len(head) < n:
        i += 1
        head.append(f"X{i:04d}USDT")
    return tuple(head[:n])


def zipf_rate_scale(symbols, exponent: float = ZIPF_EXPONENT) -> dict[str, float]:
    """Rate multiplier per symbol by its rank (the first 1.0, the k-th ``1 / k**exponent``): a few symbols carry
    most trades, as on Binance, where BTC and ETH alone print more than the hundreds of smallest pairs together."""
    return {s: 1.0 / (k + 1) ** exponent for k, s in enumerate(symbols)}


def top_rate(total_rate: float, scale: dict[str, float]) -> float:
    """The per-symbol ``rate`` (the busiest symbol's prints/s) that makes ``scale`` add up to ``total_rate``."""
    return float(total_rate) / sum(scale.values())
