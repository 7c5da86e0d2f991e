"""What the Market page shows from quantlib: indicator overlays and panels of one symbol's bars.

Kept apart from dashboard.analysis (the pair and backtest bundles), which pulls scipy and statsmodels: the
Market page is the default page and renders before those are imported.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from quantlib import indicators
from quantlib.sample import RULE


@dataclass(frozen=True)
class MarketIndicators:
    """Indicator series of one symbol; `rsi` / `volatility` are None when the window is too short for them."""

    overlays: dict[str, pd.Series]      # "SMA 20" / "EMA 50" -> series on the bars' index
    rsi: pd.Series | None
    volatility: pd.Series | None
    withheld: str | None = None         # why the volatility is withheld under the minimum-sample rule

    def summary(self) -> str:
        have = [*self.overlays, *(["RSI"] if self.rsi is not None else []),
                *(["volatility"] if self.volatility is not None else [])]
        return ", ".join(have)


def market_indicators(close: pd.Series, sma_n: int, ema_n: int, rsi_n: int, window: int, timeframe: str
                      ) -> MarketIndicators:
    """SMA / EMA overlays, Wilder RSI (needs more than `rsi_n` bars) and annualized realized volatility over
    `window` bars (needs more than `window`)."""
    withheld = None
    if window < RULE.min_bars:  # each value would be a volatility of fewer bars than the rule allows
        withheld = (f"the volatility panel is withheld: each value would rest on the window's {window} bars and the "
                    f"minimum-sample rule asks for {RULE.min_bars} (pick a window of at least {RULE.min_bars})")
    return MarketIndicators(
        {f"SMA {sma_n}": indicators.sma(close, sma_n), f"EMA {ema_n}": indicators.ema(close, ema_n)},
        indicators.rsi(close, rsi_n) if len(close) > rsi_n else None,
        indicators.realized_volatility(close, window, timeframe) if len(close) > window and not withheld else None,
        withheld)
