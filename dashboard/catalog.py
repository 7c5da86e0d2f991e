"""What a data source holds: markets, symbols, first/last tick, and whether the source is usable at all."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

CATALOG_COLUMNS = ["market", "symbol", "ticks", "first_ts", "last_ts", "last_price"]


@dataclass(frozen=True)
class Catalog:
    """`frame` has CATALOG_COLUMNS. `state`: 'ok', 'stale' (file locked, last good copy), 'missing', 'empty',
    'error' or 'no-upload'; `message` explains any state but 'ok' in plain words."""

    frame: pd.DataFrame
    state: str
    message: str | None = None

    @property
    def usable(self) -> bool:
        return self.state in ("ok", "stale") and not self.frame.empty

    @property
    def markets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.frame["market"])) if not self.frame.empty else ()

    def symbols_of(self, market: str) -> tuple[str, ...]:
        if self.frame.empty:
            return ()
        return tuple(self.frame.loc[self.frame["market"] == market, "symbol"])

    def last_ts(self, market: str) -> dt.datetime | None:
        """Time of the newest tick of `market` (the anchor of every lookback window)."""
        rows = self.frame.loc[self.frame["market"] == market, "last_ts"] if not self.frame.empty else []
        return None if len(rows) == 0 else pd.Timestamp(max(rows)).to_pydatetime()

    @staticmethod
    def empty(state: str, message: str) -> "Catalog":
        return Catalog(pd.DataFrame(columns=CATALOG_COLUMNS), state, message)
