"""Price and order-flow model of the local exchange (see ``exchange.server``).

Time runs on a fixed grid of ``STEP_US`` (50 ms) steps. Each step draws, for all symbols at once:

* a market **activity** factor ``a = x_fast + x_slow`` (two AR(1) processes, time constants 3 s and
  120 s) plus a per-symbol AR(1) term; the order arrival intensity is ``rate * exp(a + y - var/2)``, a
  log-normal Cox process whose mean is exactly the requested rate, so arrivals are bursty (variance of
  per-second counts well above the Poisson mean) at several time scales;
* a common **factor** ``f`` (the BTC log-price): a random walk whose step volatility rises with
  activity (``exp((a - var/2)/2)``, mean variance preserved), 60 % annualised;
* per-symbol log-prices ``log P = log P0 + beta * x_A + w``, where ``x_A`` is the log return of the
  symbol's **anchor** A since the start (the factor ``f`` itself, or another symbol's ``log P - log P0``;
  see ``exchange.universe``). When the symbol's ``half_life`` is set, ``w`` is an Ornstein-Uhlenbeck
  spread, so ``log P = c + beta log A + OU`` is cointegrated with A (``ETHUSDT``: A = BTC, beta 1.15,
  half-life 3 minutes, stationary sd 0.15 %). Otherwise ``w`` is an independent random walk (scaled by
  the same activity volatility), giving correlation but no cointegration. Anchors that are not traded
  are simulated all the same, so a symbol's path never depends on which others are listed. USD-M
  prices add a small mean-reverting basis (the perpetual's premium over spot): ``log P_usdm = log P + b``
  with ``b = 2 bp + b_fast + b_slow``, two OU terms (time constants 5 min and 2 h, stationary sds 1 bp
  and 5 bp), so the premium wanders between about -8 and +12 bp over hours and funding
  (``exchange.funding``) follows it. The latent ``P`` is the index price, ``P * exp(b)`` the mark price
  (``Simulator.last_paths``).

Within a step, taker orders arrive Poisson(intensity * dt / units per order) at uniform times (µs).
Each order has a side (biased towards the sign of the step's price move), sweeps one or more price
levels (geometric, mostly one) starting at the touch (one-tick spread), and fills one or more maker
orders per level (geometric). Every fill is a **trade** (own id); every (order, level) is an
**aggTrade** (own id, ``f``/``l`` = its first/last trade id, same time, price and side). Fill sizes
are log-normal in quote notional (heavy tailed, a quarter rounded to one significant digit), rounded
to the lot step. On ``spot`` the requested rate counts trades; on ``usdm`` it counts aggTrades.

Determinism: every random quantity has its own ``numpy`` generator keyed by (seed, symbol, market,
purpose) and every recursion is evaluated strictly in step order, so the output depends only on the
seed, the rates and the sequence of steps - not on how steps are batched (one call of 1000 steps
equals ten calls of 100). Adding or removing other symbols does not change a symbol's trades.
``rate_scale`` multiplies the rate per symbol (the demo trades BTC, ETH, SOL and BNB at the full rate
and the rest of its universe slower); ``Simulator.step(..., rate_factor=)`` thins some steps further (the
exchange's thin older history) without touching the price path. ``Simulator.log_prices`` advances the latent model alone (no
prints), for checks of the design.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from exchange.universe import FACTOR, SPECS, anchors_of, idio_vol, latent_vol

STEP_US = 50_000
STEP_S = STEP_US / 1e6
MARKETS = ("spot", "usdm")
_QUOTES = ("USDT", "USDC", "FDUSD", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY")
_SECONDS_PER_YEAR = 365.0 * 86400.0

# Model constants (documented in the module docstring).
FACTOR_VOL = 0.60 / math.sqrt(_SECONDS_PER_YEAR)  # per sqrt(second)
ACT_FAST_TAU, ACT_FAST_SD = 3.0, 0.55
ACT_SLOW_TAU, ACT_SLOW_SD = 120.0, 0.55
ACT_SYM_TAU, ACT_SYM_SD = 20.0, 0.35
BASIS_TAU, BASIS_MEAN, BASIS_SD = 300.0, 2.0e-4, 1.0e-4
BASIS_SLOW_TAU, BASIS_SLOW_SD = 7200.0, 5.0e-4
SIDE_BIAS = 0.35
P_ONE_LEVEL = 0.8  # geometric: P(order sweeps exactly one price level)
P_ONE_FILL = 0.6  # geometric: P(level fills exactly one maker order)
SIZE_SIGMA = 1.4
ROUND_LOT_FRACTION = 0.25
RPI_FRACTION = 0.02
BASIS_BURN_IN_S = 4 * BASIS_SLOW_TAU  # basis pre-roll before the first funding period: the start draw forgotten
PREROLL_GRID = 200  # steps (10 s) per point of the basis pre-roll (exact OU transitions between points)

def _key(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    """Independent generator for one (seed, purpose...) key."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(_key(*parts),))))


def split_symbol(symbol: str) -> tuple[str, str]:
    """``'ETHUSDT' -> ('ETH', 'USDT')`` (quote from a list of common quote assets)."""
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, "USDT"


@dataclass(frozen=True)
class SymbolModel:
    """Latent price model of one symbol (shared by both markets)."""

    symbol: str
    base: str
    quote: str
    price0: float
    beta: float  # loading on the anchor's log return
    idio_vol: float  # random-walk vol per sqrt(second); 0 for cointegrated / pure factor symbols
    half_life: float  # OU spread half-life in seconds; 0 = not cointegrated
    spread_sd: float  # OU spread stationary sd (log units)
    anchor: str = FACTOR  # symbol whose log return it loads on (FACTOR: the market factor)
    anchor_vol: float = FACTOR_VOL  # random-walk vol of the anchor per sqrt(second)

    @property
    def step_sd(self) -> float:
        """Typical sd of the latent log return over one step (for the order-side bias); > 0."""
        var = (self.beta * self.anchor_vol) ** 2 * STEP_S + self.idio_vol**2 * STEP_S
        if self.half_life > 0:
            phi = 0.5 ** (STEP_S / self.half_life)
            var += self.spread_sd**2 * (1 - phi * phi)
        return max(math.sqrt(var), 1e-9)


@dataclass(frozen=True)
class Instrument:
    """One symbol on one market: tick/lot decimals, string formats and id origins."""

    market: str
    symbol: str
    base: str
    quote: str
    tick_dec: int  # tick size = 10**-tick_dec
    qty_dec: int  # lot step = 10**-qty_dec
    price_dec: int  # decimals printed in price strings
    qty_str_dec: int  # decimals printed in quantity strings
    median_notional: float
    first_trade_id: int
    first_agg_id: int

    @property
    def tick_size(self) -> float:
        return 10.0**-self.tick_dec

    @property
    def step_size(self) -> float:
        return 10.0**-self.qty_dec


def symbol_model(symbol: str, seed: int) -> SymbolModel:
    """The latent model of ``symbol``: from ``exchange.universe.SPECS``, or random factor loadings if unknown."""
    base, quote = split_symbol(symbol)
    rng = rng_for(seed, "spec", symbol)
    spec = SPECS.get(symbol)
    if spec is not None:
        price = spec.price * float(np.exp(rng.normal(0.0, 0.0 if spec.role == "peg" else 0.01)))
        anchor_vol = FACTOR_VOL if spec.anchor == FACTOR else latent_vol(spec.anchor, FACTOR_VOL)
        return SymbolModel(symbol, base, quote, price, spec.beta, idio_vol(symbol, FACTOR_VOL), spec.half_life,
                           spec.spread_sd, spec.anchor, anchor_vol)
    price = float(np.exp(rng.uniform(math.log(0.05), math.log(500.0))))
    beta = float(rng.uniform(0.8, 1.5))
    corr = float(rng.uniform(0.45, 0.8))
    idio = beta * FACTOR_VOL * math.sqrt(1.0 / corr**2 - 1.0)
    return SymbolModel(symbol, base, quote, price, beta, idio, 0.0, 0.0)


def instrument(market: str, model: SymbolModel, seed: int) -> Instrument:
    spec = SPECS.get(model.symbol)
    p = model.price0
    if spec is not None and spec.ticks is not None:
        s_tick, s_qty, f_tick, f_pdec, f_qty = spec.ticks
    else:
        s_tick = int(min(8, max(0, 4 - math.floor(math.log10(p)))))
        s_qty = int(min(8, max(0, math.ceil(math.log10(p)))))
        f_tick = max(0, s_tick - 1)
        f_pdec = f_tick + 1
        f_qty = max(0, s_qty - 2)
    rng = rng_for(seed, "ids", market, model.symbol)
    first_trade = int(rng.integers(10**8, 5 * 10**9))
    first_agg = int(rng.integers(10**8, first_trade))
    if market == "spot":
        return Instrument(market, model.symbol, model.base, model.quote, s_tick, s_qty, 8, 8, 60.0,
                          first_trade, first_agg)
    return Instrument(market, model.symbol, model.base, model.quote, f_tick, f_qty, f_pdec, f_qty, 400.0,
                      first_trade, first_agg)


@dataclass(frozen=True)
class Batch:
    """Prints of one instrument over some steps. Prices in ticks, quantities in lot steps, times in µs.

    Trade ids are ``first_trade_id ...`` (contiguous), aggTrade ids ``first_agg_id ...``.
    """

    instrument: Instrument
    first_trade_id: int
    first_agg_id: int
    trade_time: np.ndarray
    trade_price: np.ndarray
    trade_qty: np.ndarray
    trade_m: np.ndarray  # is buyer maker
    trade_rpi: np.ndarray
    agg_first: np.ndarray
    agg_last: np.ndarray
    agg_time: np.ndarray
    agg_price: np.ndarray
    agg_qty: np.ndarray
    agg_nq: np.ndarray
    agg_m: np.ndarray

    @property
    def n_trades(self) -> int:
        return len(self.trade_time)

    @property
    def n_aggs(self) -> int:
        return len(self.agg_time)

    @property
    def n_units(self) -> int:
        """Prints in the market's unit: trades on spot, aggTrades on usdm."""
        return self.n_trades if self.instrument.market == "spot" else self.n_aggs

    def take(self, lo: int, hi: int) -> "Batch":
        """Slice of a one-fill-per-aggTrade batch (as made by ``Simulator.blast``)."""
        if self.n_trades != self.n_aggs:
            raise ValueError("take() needs one trade per aggTrade")
        return Batch(
            self.instrument, self.first_trade_id + lo, self.first_agg_id + lo,
            *(a[lo:hi] for a in (self.trade_time, self.trade_price, self.trade_qty, self.trade_m,
                                 self.trade_rpi, self.agg_first, self.agg_last, self.agg_time,
                                 self.agg_price, self.agg_qty, self.agg_nq, self.agg_m)),
        )


class AR1:
    """``y[k] = phi * y[k-1] + e[k]`` with numpy only, exact and independent of batching.

    Steps are grouped in blocks of ``L`` aligned on the step count; inside a block starting after ``y0``,
    ``y[j] = phi**j * (phi * y0 + cumsum(e * phi**-i)[j])``. A batch that ends inside a block keeps the
    running sum and resumes it, so every value is computed by the same operations however the steps
    are split. The sequential part is one scalar recursion per block.
    """

    L = 128

    def __init__(self, phi: float, y: float):
        self.phi = float(phi)
        self._pw = self.phi ** np.arange(self.L, dtype=np.float64)
        self._inv = self.phi ** -np.arange(self.L, dtype=np.float64)
        self._y0 = float(y)  # value before the current block
        self._s = 0.0  # running sum inside the current block
        self._j = 0  # position inside the current block
        self.last = float(y)

    def __call__(self, e: np.ndarray) -> np.ndarray:
        out = np.empty(len(e), dtype=np.float64)
        pos = 0
        if self._j:  # finish the open block
            pos = self._partial(e, out, 0)
        n_full = (len(e) - pos) // self.L
        if n_full:
            seg = e[pos: pos + n_full * self.L].reshape(n_full, self.L) * self._inv
            sums = np.cumsum(seg, axis=1)
            y0 = np.empty(n_full, dtype=np.float64)
            y = self._y0
            pw_last, last_sums = self._pw[-1], sums[:, -1].tolist()
            for b in range(n_full):
                y0[b] = y
                y = pw_last * (self.phi * y + last_sums[b])
            out[pos: pos + n_full * self.L] = (self._pw * (self.phi * y0[:, None] + sums)).ravel()
            self._y0 = y
            pos += n_full * self.L
        if pos < len(e):
            self._partial(e, out, pos)
        if len(e):
            self.last = float(out[-1])
        return out

    def _partial(self, e: np.ndarray, out: np.ndarray, pos: int) -> int:
        take = min(self.L - self._j, len(e) - pos)
        j = self._j
        cs = np.cumsum(np.concatenate(([self._s], e[pos: pos + take] * self._inv[j: j + take])))[1:]
        out[pos: pos + take] = self._pw[j: j + take] * (self.phi * self._y0 + cs)
        self._s, self._j = float(cs[-1]), j + take
        if self._j == self.L:
            self._y0, self._s, self._j = float(out[pos + take - 1]), 0.0, 0
        return pos + take


def _walk(incr: np.ndarray, state: float) -> np.ndarray:
    """``y[k] = y[k-1] + incr[k]`` with ``y[-1] = state``, summed strictly left to right."""
    return np.cumsum(np.concatenate(([state], incr)))[1:]


@dataclass
class _LatentState:
    """Latent path of one symbol (traded, or only an anchor of a traded one)."""

    model: SymbolModel
    w_ou: AR1 | None  # cointegration spread (OU), or None for an idiosyncratic walk
    w: float  # last value of the walk
    rng_w: np.random.Generator


@dataclass
class _SymbolState:
    y: AR1  # own activity
    basis: AR1  # usdm basis minus its mean: fast part
    logp: float  # last latent log price (spot)
    rng_y: np.random.Generator
    rng_b: np.random.Generator
    basis_slow: AR1 | None = None  # slow part
    rng_bs: np.random.Generator | None = None


@dataclass
class _InstrumentState:
    inst: Instrument
    next_trade: int
    next_agg: int
    rngs: dict[str, np.random.Generator] = field(default_factory=dict)


_ORDER_STREAMS = ("count", "time", "side", "level", "fill", "size", "round", "rpi")


class Simulator:
    """Generates prints for several symbols and markets, step by step (see module docstring)."""

    def __init__(self, symbols: tuple[str, ...], markets: tuple[str, ...], *, seed: int, rate: float,
                 rate_scale: dict[str, float] | None = None):
        self.seed = int(seed)
        self.rate = float(rate)
        self.rate_scale = dict(rate_scale or {})  # symbol -> multiplier of ``rate`` (default 1)
        self.symbols = tuple(symbols)
        self.markets = tuple(markets)
        self.models = {s: symbol_model(s, self.seed) for s in self.symbols}
        self.instruments = {
            (m, s): instrument(m, self.models[s], self.seed) for m in self.markets for s in self.symbols
        }
        self._rng_fast = rng_for(self.seed, "act", "fast")
        self._rng_slow = rng_for(self.seed, "act", "slow")
        self._rng_factor = rng_for(self.seed, "factor")
        self._x_fast = AR1(math.exp(-STEP_S / ACT_FAST_TAU), float(self._rng_fast.normal(0.0, ACT_FAST_SD)))
        self._x_slow = AR1(math.exp(-STEP_S / ACT_SLOW_TAU), float(self._rng_slow.normal(0.0, ACT_SLOW_SD)))
        self._f = 0.0
        # latent paths in dependency order: every anchor before the symbols that load on it
        order = list(dict.fromkeys(a for s in self.symbols for a in (*reversed(anchors_of(s)), s)))
        self._lat: dict[str, _LatentState] = {}
        for s in order:
            mdl = self.models[s] if s in self.models else symbol_model(s, self.seed)
            rng_w = rng_for(self.seed, "w", s)
            w_ou = None
            if mdl.half_life > 0:
                w_ou = AR1(0.5 ** (STEP_S / mdl.half_life), float(rng_w.normal(0.0, mdl.spread_sd)))
            self._lat[s] = _LatentState(mdl, w_ou, w_ou.last if w_ou is not None else 0.0, rng_w)
        self._x0 = self._latent_start()
        self._sym: dict[str, _SymbolState] = {}
        for s in self.symbols:
            mdl = self.models[s]
            rng_y, rng_b = rng_for(self.seed, "y", s), rng_for(self.seed, "basis", s)
            y = AR1(math.exp(-STEP_S / ACT_SYM_TAU), float(rng_y.normal(0.0, ACT_SYM_SD)))
            basis = AR1(math.exp(-STEP_S / BASIS_TAU), 0.0)
            rng_bs = rng_for(self.seed, "basis_slow", s)
            slow = AR1(math.exp(-STEP_S / BASIS_SLOW_TAU), float(rng_bs.normal(0.0, BASIS_SLOW_SD)))
            self._sym[s] = _SymbolState(y, basis, math.log(mdl.price0) + self._x0[s], rng_y, rng_b, slow, rng_bs)
        self._inst: dict[tuple[str, str], _InstrumentState] = {}
        for key, inst in self.instruments.items():
            rngs = {name: rng_for(self.seed, "orders", key[0], key[1], name) for name in _ORDER_STREAMS}
            rngs.update({name: rng_for(self.seed, "blast", key[0], key[1], name) for name in
                         ("bside", "bsize")})
            self._inst[key] = _InstrumentState(inst, inst.first_trade_id, inst.first_agg_id, rngs)
        self._stepped = False
        # per symbol, the steps of the last `step` call: (step starts µs, latent log price, usdm log basis)
        self.last_paths: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._last_price: dict[tuple[str, str], float] = {
            (m, s): self.models[s].price0 for m in self.markets for s in self.symbols
        }

    # --- ids -------------------------------------------------------------------------------------
    def next_ids(self, market: str, symbol: str) -> tuple[int, int]:
        st = self._inst[(market, symbol)]
        return st.next_trade, st.next_agg

    def rewind_ids(self, market: str, symbol: str, next_trade: int, next_agg: int) -> None:
        """Hand out ids from ``next_trade`` / ``next_agg`` again: the prints generated after them were never
        published (the exchange dropped prints drawn ahead of their time), so the ids stay contiguous."""
        st = self._inst[(market, symbol)]
        if not (st.inst.first_trade_id <= next_trade <= st.next_trade
                and st.inst.first_agg_id <= next_agg <= st.next_agg):
            raise ValueError(f"{market} {symbol}: cannot rewind ids to {next_trade}/{next_agg} from "
                             f"{st.next_trade}/{st.next_agg}")
        st.next_trade, st.next_agg = int(next_trade), int(next_agg)

    # --- step generation -------------------------------------------------------------------------
    def _latent_start(self) -> dict[str, float]:
        """Log return of each latent symbol at the start (before any step): its initial OU value."""
        x = {FACTOR: 0.0}
        for s, st in self._lat.items():
            x[s] = st.model.beta * x[st.model.anchor] + st.w
        return x

    def _latent(self, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Advance the latent model ``n`` steps: market activity and each symbol's log return since the start."""
        xf, xs = self._x_fast, self._x_slow
        x_fast = xf(ACT_FAST_SD * math.sqrt(1 - xf.phi**2) * self._rng_fast.standard_normal(n))
        x_slow = xs(ACT_SLOW_SD * math.sqrt(1 - xs.phi**2) * self._rng_slow.standard_normal(n))
        act = x_fast + x_slow
        volmult = np.exp(0.5 * (act - 0.5 * (ACT_FAST_SD**2 + ACT_SLOW_SD**2)))
        f = _walk(FACTOR_VOL * math.sqrt(STEP_S) * volmult * self._rng_factor.standard_normal(n), self._f)
        self._f = float(f[-1])
        x = {FACTOR: f}
        for s, st in self._lat.items():
            mdl = st.model
            z = st.rng_w.standard_normal(n)
            if st.w_ou is not None:
                w = st.w_ou(mdl.spread_sd * math.sqrt(1 - st.w_ou.phi**2) * z)
            else:
                w = _walk(mdl.idio_vol * math.sqrt(STEP_S) * volmult * z, st.w)
                st.w = float(w[-1])
            x[s] = mdl.beta * x[mdl.anchor] + w
        return act, x

    def log_prices(self, n: int, every: int = 1) -> dict[str, np.ndarray]:
        """Advance ``n`` steps without generating prints; the latent log price of each symbol at every
        ``every``-th step (the last step of each group). For model checks: a simulator used for prints
        must not also be advanced with this (its prints would skip these steps)."""
        _, x = self._latent(n)
        return {s: math.log(self.models[s].price0) + x[s][every - 1::every] for s in self.symbols}

    def preroll_basis(self, n_steps: int, burn_in_steps: int = 0) -> dict[str, tuple[float, int]]:
        """Advance the perpetuals' basis alone (no prices, no prints) over ``burn_in_steps`` unrecorded steps, then
        the ``n_steps`` steps that precede the first generated one; per symbol (premium ``mark / index - 1`` summed
        over those ``n_steps``, ``n_steps``).

        For the funding period that the first generated step falls in: without it that period would average only
        the steps from the first one on (minutes, when the history starts just before a funding time), i.e. little
        more than the basis's start-up draw, instead of a whole period of premium like every other one. The burn-in
        (``BASIS_BURN_IN_S``) makes the start draw irrelevant. Runs on a coarse grid (``PREROLL_GRID`` steps per
        point, the last point of the recorded part covers the remainder): the OU transitions between points are
        exact, the sum counts each point's value once per step it stands for. Uses only the basis generators, so
        nothing else changes; only before the first ``step``."""
        if self._stepped:
            raise RuntimeError("preroll_basis runs before the first step")
        if "usdm" not in self.markets or n_steps + burn_in_steps <= 0:
            return {}
        g = PREROLL_GRID
        q, r = divmod(int(n_steps), g)
        n_burn = -(-int(burn_in_steps) // g)
        out: dict[str, tuple[float, int]] = {}
        for s in self.symbols:
            st = self._sym[s]
            parts = ((st.basis, st.rng_b, BASIS_SD), (st.basis_slow, st.rng_bs, BASIS_SLOW_SD))
            path = np.full(q + int(r > 0), BASIS_MEAN)
            for i, (ar, rng, sd) in enumerate(parts):
                y = ar.last
                pg = ar.phi ** g
                if n_burn:
                    y = AR1(pg, y)(sd * math.sqrt(1 - pg**2) * rng.standard_normal(n_burn))[-1]
                if r:  # the remainder first: the grid points then end on the step before the first generated one
                    pr = ar.phi ** r
                    y = pr * y + sd * math.sqrt(1 - pr**2) * float(rng.standard_normal())
                    path[0] += y
                if q:
                    seg = AR1(pg, y)(sd * math.sqrt(1 - pg**2) * rng.standard_normal(q))
                    path[int(r > 0):] += seg
                    y = float(seg[-1])
                new = AR1(ar.phi, float(y))
                if i == 0:
                    st.basis = new
                else:
                    st.basis_slow = new
            weights = np.full(len(path), float(g))
            if r:
                weights[0] = r
            out[s] = (float(np.dot(np.expm1(path), weights)), int(n_steps))
        return out

    def step(self, starts_us: np.ndarray, rate_factor: dict[str, float | np.ndarray] | None = None
             ) -> dict[tuple[str, str], Batch]:
        """Generate the steps starting at ``starts_us`` (increasing, >= STEP_US apart).

        ``rate_factor`` (symbol -> multiplier, default 1, or one multiplier per step) thins these steps' order
        flow only: the latent paths have their own generators, so prices follow the same path whatever the rate
        (prints sample it)."""
        starts = np.asarray(starts_us, dtype=np.int64)
        n = len(starts)
        if n == 0:
            return {}
        self._stepped = True
        act, x = self._latent(n)
        act_var = ACT_FAST_SD**2 + ACT_SLOW_SD**2
        out: dict[tuple[str, str], Batch] = {}
        for s in self.symbols:
            st = self._sym[s]
            mdl = self.models[s]
            y = st.y(ACT_SYM_SD * math.sqrt(1 - st.y.phi**2) * st.rng_y.standard_normal(n))
            logp = math.log(mdl.price0) + x[s]
            ret = np.diff(np.concatenate(([st.logp], logp)))
            st.logp = float(logp[-1])
            side_z = ret / mdl.step_sd
            basis = 0.0
            if "usdm" in self.markets:  # own generators: skipping them leaves every other quantity unchanged
                slow = st.basis_slow
                basis = (BASIS_MEAN + st.basis(BASIS_SD * math.sqrt(1 - st.basis.phi**2) * st.rng_b.standard_normal(n))
                         + slow(BASIS_SLOW_SD * math.sqrt(1 - slow.phi**2) * st.rng_bs.standard_normal(n)))
                self.last_paths[s] = (starts, logp, basis)
            rate = self.rate * self.rate_scale.get(s, 1.0) * (rate_factor.get(s, 1.0) if rate_factor else 1.0)
            intensity = rate * np.exp(act + y - 0.5 * (act_var + ACT_SYM_SD**2))
            for m in self.markets:
                price = np.exp(logp + basis) if m == "usdm" else np.exp(logp)
                self._last_price[(m, s)] = float(price[-1])
                out[(m, s)] = self._orders(self._inst[(m, s)], starts, price, intensity, side_z)
        return out

    def _orders(self, st: _InstrumentState, starts: np.ndarray, price: np.ndarray, intensity: np.ndarray,
                side_z: np.ndarray) -> Batch:
        inst, r = st.inst, st.rngs
        per_order = 1.0 / P_ONE_LEVEL  # mean levels per order (geometric)
        if inst.market == "spot":
            per_order /= P_ONE_FILL  # mean trades per order
        counts = r["count"].poisson(intensity * (STEP_S / per_order))
        n = int(counts.sum())
        if n == 0:  # a quiet symbol (most of a large universe, most steps): no draws to make, same output
            return self._empty(st)
        step_idx = np.repeat(np.arange(len(starts)), counts)
        times = np.sort(starts[step_idx] + (r["time"].random(n) * STEP_US).astype(np.int64))
        taker_buy = r["side"].random(n) < 0.5 + SIDE_BIAS * np.tanh(side_z[step_idx])
        levels = r["level"].geometric(P_ONE_LEVEL, n)
        mid = price[step_idx] * 10.0**inst.tick_dec
        return self._fill(st, times, mid, taker_buy, levels, r["fill"].geometric(P_ONE_FILL, int(levels.sum())),
                          r["size"], r["round"], r["rpi"])

    def _fill(self, st: _InstrumentState, times: np.ndarray, mid: np.ndarray, taker_buy: np.ndarray,
              levels: np.ndarray, fills: np.ndarray, rng_size: np.random.Generator,
              rng_round: np.random.Generator | None, rng_rpi: np.random.Generator | None) -> Batch:
        inst = st.inst
        n_lev = len(fills)
        lev_order = np.repeat(np.arange(len(levels)), levels)
        lev_j = np.arange(n_lev) - np.repeat(np.cumsum(levels) - levels, levels)
        bid = np.maximum(np.floor(mid).astype(np.int64), 1)
        buy = taker_buy[lev_order]
        lev_price = np.where(buy, bid[lev_order] + 1 + lev_j, np.maximum(bid[lev_order] - lev_j, 1))
        n_fill = int(fills.sum())
        fill_lev = np.repeat(np.arange(n_lev), fills)
        fill_first = np.cumsum(fills) - fills
        notional = inst.median_notional * np.exp(
            SIZE_SIGMA * np.clip(rng_size.standard_normal(n_fill), -4.0, 4.0))
        qty = notional * 10.0 ** (inst.tick_dec + inst.qty_dec) / lev_price[fill_lev]
        qty = np.maximum(np.rint(qty), 1.0)
        if rng_round is not None:
            mag = 10.0 ** np.floor(np.log10(qty))
            qty = np.where(rng_round.random(n_fill) < ROUND_LOT_FRACTION, np.maximum(np.rint(qty / mag), 1) * mag, qty)
        qty = qty.astype(np.int64)
        rpi = (rng_rpi.random(n_fill) < RPI_FRACTION) if (rng_rpi is not None and inst.market == "usdm") \
            else np.zeros(n_fill, dtype=bool)
        if n_lev:
            agg_qty = np.add.reduceat(qty, fill_first)
            agg_nq = np.add.reduceat(np.where(rpi, 0, qty), fill_first)
        else:
            agg_qty = agg_nq = np.zeros(0, dtype=np.int64)
        first_trade, first_agg = st.next_trade, st.next_agg
        agg_first = first_trade + fill_first.astype(np.int64)
        st.next_trade += n_fill
        st.next_agg += n_lev
        lev_time = times[lev_order]
        return Batch(
            inst, first_trade, first_agg,
            trade_time=lev_time[fill_lev], trade_price=lev_price[fill_lev], trade_qty=qty,
            trade_m=~buy[fill_lev], trade_rpi=rpi,
            agg_first=agg_first, agg_last=agg_first + fills.astype(np.int64) - 1, agg_time=lev_time,
            agg_price=lev_price, agg_qty=agg_qty, agg_nq=agg_nq, agg_m=~buy,
        )

    @staticmethod
    def _empty(st: _InstrumentState) -> Batch:
        i64, b = np.zeros(0, np.int64), np.zeros(0, bool)
        return Batch(st.inst, st.next_trade, st.next_agg, trade_time=i64, trade_price=i64, trade_qty=i64,
                     trade_m=b, trade_rpi=b, agg_first=i64, agg_last=i64, agg_time=i64, agg_price=i64,
                     agg_qty=i64, agg_nq=i64, agg_m=b)

    # --- blast -----------------------------------------------------------------------------------
    def blast(self, market: str, n: int, now_us: int) -> dict[tuple[str, str], Batch]:
        """``n`` single-fill prints spread evenly over the symbols, all at ``now_us`` (benchmarks)."""
        k = len(self.symbols)
        out = {}
        for i, s in enumerate(self.symbols):
            cnt = n // k + (1 if i < n % k else 0)
            st = self._inst[(market, s)]
            mid = np.full(cnt, self._last_price[(market, s)] * 10.0**st.inst.tick_dec)
            taker_buy = st.rngs["bside"].random(cnt) < 0.5
            ones = np.ones(cnt, dtype=np.int64)
            out[(market, s)] = self._fill(st, np.full(cnt, now_us, dtype=np.int64), mid, taker_buy, ones, ones,
                                          st.rngs["bsize"], None, None)
        return out
