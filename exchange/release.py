"""Prints generated ahead of their time, handed out once their trade time has come.

A matching engine publishes a trade when it happens: Binance's trade event leaves a few ms after the trade time.
The simulator draws whole 50 ms steps for every symbol at once (``exchange.model``), which costs about as much for
one step as for several at a whole-market size, so the exchange draws a few steps ahead in one go and keeps the
prints here; its loop takes out what is due every few ms and publishes it (``exchange.server``). Nothing in here
is visible to clients (REST, ground truth) before it is due.

Within one instrument prints are released in id order: times are non-decreasing with the ids, and the fills of
one aggTrade share its time, so every release is whole aggTrades and contiguous trade ids.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from exchange.model import Batch

Key = tuple[str, str]  # (market, symbol)


def agg_slice(b: Batch, a0: int, a1: int) -> Batch:
    """aggTrades ``a0:a1`` of ``b`` with the trades they cover."""
    t0 = int(b.agg_first[a0]) - b.first_trade_id
    t1 = int(b.agg_last[a1 - 1]) - b.first_trade_id + 1
    return Batch(b.instrument, b.first_trade_id + t0, b.first_agg_id + a0,
                 *(x[t0:t1] for x in (b.trade_time, b.trade_price, b.trade_qty, b.trade_m, b.trade_rpi)),
                 *(x[a0:a1] for x in (b.agg_first, b.agg_last, b.agg_time, b.agg_price, b.agg_qty, b.agg_nq,
                                      b.agg_m)))


class _Chunk:
    """The prints of one generation call, every instrument's aggTrades merged in time order."""

    def __init__(self, batches: dict[Key, Batch], end_us: int):
        self.end_us = int(end_us)  # the generated steps end here: later chunks start at or after it
        self.keys = [k for k, b in batches.items() if b.n_aggs]
        self.batches = [batches[k] for k in self.keys]
        self.cursor = [0] * len(self.keys)  # aggTrades released so far, per key
        self.alive = np.ones(len(self.keys), dtype=bool)
        if self.keys:
            times = np.concatenate([b.agg_time for b in self.batches])
            owner = np.repeat(np.arange(len(self.keys), dtype=np.int32), [b.n_aggs for b in self.batches])
            order = np.argsort(times, kind="stable")
            self.times, self.owner = times[order], owner[order]
        else:
            self.times, self.owner = np.zeros(0, np.int64), np.zeros(0, np.int32)
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.times)

    def due(self, now_us: int) -> dict[Key, Batch]:
        hi = int(np.searchsorted(self.times, now_us, side="right"))
        if hi <= self.pos:
            return {}
        owners, counts = np.unique(self.owner[self.pos:hi], return_counts=True)
        self.pos = hi
        out: dict[Key, Batch] = {}
        for i, c in zip(owners.tolist(), counts.tolist()):
            a0 = self.cursor[i]
            self.cursor[i] = a0 + c
            if self.alive[i]:
                out[self.keys[i]] = agg_slice(self.batches[i], a0, a0 + c)
        return out

    def drop(self, symbols: set[str] | None) -> None:
        for i, (_, sym) in enumerate(self.keys):
            if symbols is None or sym in symbols:
                self.alive[i] = False


class ReleaseQueue:
    """Generated, unpublished prints in time order (``add`` a generation call's batches, ``due(now)`` takes out
    everything whose time has come, ``drop`` forgets some or all of them)."""

    def __init__(self) -> None:
        self._chunks: deque[_Chunk] = deque()

    def add(self, batches: dict[Key, Batch], end_us: int) -> None:
        self._chunks.append(_Chunk(batches, end_us))

    def due(self, now_us: int) -> list[dict[Key, Batch]]:
        """The prints with a time <= ``now_us``, one dict per generation call, oldest first."""
        out = []
        while self._chunks:
            chunk = self._chunks[0]
            got = chunk.due(now_us)
            if got:
                out.append(got)
            if not chunk.done:
                break
            self._chunks.popleft()
        return out

    def drop(self, symbols: set[str] | None = None) -> None:
        """Forget the pending prints of ``symbols`` (all when None); the caller rewinds their ids."""
        if symbols is None:
            self._chunks.clear()
            return
        for chunk in self._chunks:
            chunk.drop(symbols)

    def next_time(self) -> int | None:
        """Time (µs) of the next pending print, None when nothing is pending."""
        for chunk in self._chunks:
            if not chunk.done:
                return int(chunk.times[chunk.pos])
        return None

    def __len__(self) -> int:
        return sum(len(c.times) - c.pos for c in self._chunks)
