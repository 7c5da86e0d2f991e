"""The one minimum-sample rule: below it an estimate is withheld, and the reason says what is missing.

Every panel that shows a statistic estimated from bars or trades asks this rule first (the backtest's
Sharpe and hit rate, the sweep and walk-forward grids, the Pairs page's correlation heat map and rolling
correlation, the Market page's volatility), so that a number is either shown on an adequate sample or
replaced by a sentence saying why it is not shown.

- `min_bars`: any statistic estimated from bars (a correlation, a volatility, a Sharpe ratio) needs at
  least this many bars (30: the usual small-sample floor; a correlation of 3 bars is ±1 by construction).
- `min_trades`: statistics *about trades* (hit rate, Sharpe of a trading rule, deflated Sharpe) need this
  many closed trades; one trade is one draw, not a distribution.
- `min_span`: an *annualized performance* figure (a strategy's Sharpe) needs at least this much clock time (12 hours of a 24/7 market already
  extrapolate 730x; two hours extrapolate 4,380x and rest on a handful of trades of one intraday regime).
  The Sharpe's confidence interval says how little even 12 hours pin down.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


def _span_words(span: pd.Timedelta) -> str:
    s = int(round(span.total_seconds()))
    if s >= 86_400:
        d, h = divmod(s, 86_400)
        return f"{d} d {h // 3600} h" if h >= 3600 else f"{d} d"
    if s >= 3600:
        h, m = divmod(s, 3600)
        return f"{h} h {m // 60} min" if m >= 60 else f"{h} h"
    if s >= 60:
        return f"{s // 60} min"
    return f"{s} s"


@dataclass(frozen=True)
class SampleRule:
    """Minimum sample below which an estimate is withheld (module docstring)."""

    min_bars: int = 30
    min_trades: int = 10
    min_span: pd.Timedelta = pd.Timedelta(hours=12)

    def bars(self, n: int, what: str = "this statistic") -> str | None:
        """None when `n` bars suffice, else why not ("the correlation heat map needs at least 30 bars, have 3")."""
        if n >= self.min_bars:
            return None
        return f"{what} needs at least {self.min_bars} bars, have {n}"

    def trades(self, n: int, what: str = "this statistic") -> str | None:
        if n >= self.min_trades:
            return None
        return f"{what} needs at least {self.min_trades} closed trades, have {n}"

    def annualized(self, n_bars: int, n_trades: int | None, span: pd.Timedelta | None,
                   what: str = "an annualized Sharpe ratio") -> str | None:
        """None when an annualized trading statistic may be shown; else every shortfall, in one sentence.
        `n_trades` None: a buy-and-hold or other non-trading series (no trade minimum)."""
        short = []
        if n_bars < self.min_bars:
            short.append(f"{n_bars} bars (need {self.min_bars})")
        if n_trades is not None and n_trades < self.min_trades:
            short.append(f"{n_trades} trade{'s' if n_trades != 1 else ''} (need {self.min_trades})")
        if span is None or pd.isna(span) or span < self.min_span:
            have = "no time span" if span is None or pd.isna(span) else _span_words(pd.Timedelta(span))
            short.append(f"{have} of data (need {_span_words(self.min_span)})")
        if not short:
            return None
        return f"{what} is withheld: only " + ", ".join(short)

    def describe(self) -> str:
        return (f"statistics need at least {self.min_bars} bars; trade statistics {self.min_trades} closed trades; "
                f"an annualized performance figure {_span_words(self.min_span)} of data")


RULE = SampleRule()

span_words = _span_words
