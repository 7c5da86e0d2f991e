"""In-memory ground truth of the local exchange: every print ever published, per (market, symbol).

Columnar, growable numpy arrays (amortised doubling). Ids are contiguous, so the row of trade id ``i``
is ``i - first_trade_id`` (same for aggTrades) and id lookups are O(1); time lookups use
``searchsorted`` on the non-decreasing time column. Appends happen on the exchange's loop thread; a
lock makes snapshots safe from other threads (views taken earlier stay valid after growth).
"""

from __future__ import annotations

import threading

import numpy as np

from exchange.model import Batch, Instrument

_TRADE_COLS = {"time": np.int64, "price": np.int64, "qty": np.int64, "m": np.bool_, "rpi": np.bool_}
_AGG_COLS = {"first": np.int64, "last": np.int64, "time": np.int64, "price": np.int64, "qty": np.int64,
             "nq": np.int64, "m": np.bool_}


class Columns:
    """Growable set of equally long numpy columns."""

    def __init__(self, dtypes: dict[str, type]):
        self._arr = {k: np.empty(0, dtype=dt) for k, dt in dtypes.items()}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, cols: dict[str, np.ndarray]) -> None:
        k = len(next(iter(cols.values())))
        need = self._n + k
        cap = len(next(iter(self._arr.values())))
        if need > cap:
            new_cap = max(need, 2 * cap, 4096)
            for name, old in self._arr.items():
                arr = np.empty(new_cap, dtype=old.dtype)
                arr[: self._n] = old[: self._n]
                self._arr[name] = arr
        for name, arr in self._arr.items():
            arr[self._n: need] = cols[name]
        self._n = need

    def view(self) -> dict[str, np.ndarray]:
        return {k: a[: self._n] for k, a in self._arr.items()}


class InstrumentHistory:
    """All trades and aggTrades of one instrument, oldest first."""

    def __init__(self, inst: Instrument):
        self.inst = inst
        self.trades = Columns(_TRADE_COLS)
        self.aggs = Columns(_AGG_COLS)
        self._lock = threading.Lock()

    def append(self, b: Batch) -> None:
        with self._lock:
            if b.first_trade_id != self.inst.first_trade_id + len(self.trades) or \
                    b.first_agg_id != self.inst.first_agg_id + len(self.aggs):
                raise RuntimeError(f"non-contiguous batch for {self.inst.market} {self.inst.symbol}")
            self.trades.append({"time": b.trade_time, "price": b.trade_price, "qty": b.trade_qty,
                                "m": b.trade_m, "rpi": b.trade_rpi})
            self.aggs.append({"first": b.agg_first, "last": b.agg_last, "time": b.agg_time,
                              "price": b.agg_price, "qty": b.agg_qty, "nq": b.agg_nq, "m": b.agg_m})

    def trade_view(self) -> dict[str, np.ndarray]:
        with self._lock:
            return self.trades.view()

    def agg_view(self) -> dict[str, np.ndarray]:
        with self._lock:
            return self.aggs.view()

    @property
    def n_units(self) -> int:
        """Prints in the market's unit (spot: trades, usdm: aggTrades)."""
        return len(self.trades) if self.inst.market == "spot" else len(self.aggs)

    def next_ids(self) -> tuple[int, int]:
        """The trade id and aggTrade id the next print of this instrument gets."""
        with self._lock:
            return self.inst.first_trade_id + len(self.trades), self.inst.first_agg_id + len(self.aggs)

    def last_unit_id(self) -> int | None:
        if self.inst.market == "spot":
            n, first = len(self.trades), self.inst.first_trade_id
        else:
            n, first = len(self.aggs), self.inst.first_agg_id
        return first + n - 1 if n else None
