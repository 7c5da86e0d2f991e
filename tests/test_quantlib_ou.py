"""quantlib.ou: the OU fit against a simulated OU with known parameters and statsmodels' AR(1) OLS; Bertram's
cycle time and optimal band against scipy integration of the first-passage times; the desk's band rule
against the Green's function by quadrature and a seeded Monte Carlo."""
from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import integrate, optimize, special

from quantlib import ou

THETA, MU, SIGMA = 0.05, 2.0, 0.3


def _simulate(n=60_000, seed=1, theta=THETA, mu=MU, sigma=SIGMA):
    """Exact discretization of dX = -theta (X - mu) dt + sigma dW at unit steps."""
    rng = np.random.default_rng(seed)
    phi = math.exp(-theta)
    sd = sigma * math.sqrt((1 - phi**2) / (2 * theta))
    x = np.empty(n)
    x[0] = mu
    e = rng.normal(0, sd, n)
    for t in range(1, n):
        x[t] = mu + phi * (x[t - 1] - mu) + e[t]
    return x


def test_fit_recovers_known_parameters_and_matches_ar1_ols():
    x = _simulate()
    f = ou.fit_ou(x)
    # asymptotic sd of theta-hat ~ sqrt(2 theta / n) = 0.0013 -> 10% is > 3 sd; sigma-hat is much tighter
    assert f.theta == pytest.approx(THETA, rel=0.1)
    assert f.sigma == pytest.approx(SIGMA, rel=0.02)
    assert f.mu == pytest.approx(MU, abs=3 * SIGMA / THETA / math.sqrt(len(x)))
    assert f.sigma_eq == pytest.approx(SIGMA / math.sqrt(2 * THETA), rel=0.05)
    assert f.half_life == pytest.approx(math.log(2) / f.theta)
    ols = sm.OLS(x[1:], sm.add_constant(x[:-1])).fit()
    assert f.phi == pytest.approx(ols.params[1], rel=1e-10)
    assert f.mu == pytest.approx(ols.params[0] / (1 - ols.params[1]), rel=1e-10)
    # residual variance (MLE, / n) = sigma^2 (1 - phi^2) / (2 theta)
    assert ols.ssr / (len(x) - 1) == pytest.approx(f.sigma**2 * (1 - f.phi**2) / (2 * f.theta), rel=1e-10)
    assert "half-life" in f.summary()


def test_random_walk_is_not_mean_reverting_and_bad_input_is_explained():
    growth = np.exp(0.01 * np.arange(500)) + np.random.default_rng(2).normal(0, 0.01, 500)  # AR(1) coef > 1
    f = ou.fit_ou(growth)
    assert not f.mean_reverting and "not mean-reverting" in f.summary()
    with pytest.raises(ValueError, match="does not mean-revert"):
        ou.bertram(f, 0.1)
    rw = np.cumsum(np.random.default_rng(2).normal(size=500))  # a random walk fits phi just under 1
    slow = ou.fit_ou(rw)
    assert slow.half_life > 125 and "too few reversions" in slow.problem
    with pytest.raises(ValueError, match="too few reversions"):
        ou.optimal_band(slow, 0.1)
    with pytest.raises(ValueError, match="need >= 30"):
        ou.fit_ou([1.0, 2.0, 1.5])
    with pytest.raises(ValueError, match="constant"):
        ou.fit_ou(np.ones(50))


FIT = ou.OUFit(THETA, 0.0, SIGMA, SIGMA / math.sqrt(2 * THETA), math.exp(-THETA), math.log(2) / THETA, 10_000)


def _passage_quad(x, y, theta=THETA, sigma=SIGMA):
    """E[first time from x up to y] = int_x^y s(u) int_-inf^u m(z) dz du with s = exp(theta u^2 / sigma^2),
    m = 2 / (sigma^2 s) (scale and speed densities of the OU), by double quadrature."""
    inner = lambda u: integrate.quad(lambda z: 2 / sigma**2 * math.exp(-theta * z * z / sigma**2), -np.inf, u)[0]
    return integrate.quad(lambda u: math.exp(theta * u * u / sigma**2) * inner(u), x, y)[0]


def test_bertram_cycle_time_equals_first_passage_integrals():
    for a, m in ((-0.5, 0.5), (-1.0, 0.3), (-0.2, 1.2)):
        by_quad = _passage_quad(a, m) + _passage_quad(-m, -a)  # a -> m, then back m -> a (by symmetry)
        assert ou.bertram_cycle_time(FIT, a, m) == pytest.approx(by_quad, rel=1e-6)


def test_bertram_optimum_against_numerical_maximization():
    cost = 0.2
    b = ou.bertram(FIT, cost)
    k = math.sqrt(THETA) / SIGMA
    m = b.entry
    # the published first-order condition holds at the solution
    assert math.exp(k * k * m * m) * (2 * m - cost) == pytest.approx(SIGMA * math.sqrt(math.pi / THETA)
                                                                     * special.erfi(m * k), rel=1e-8)
    # and it maximizes (2m - c) / E[T] with E[T] from quadrature (independent of erfi)
    rate = lambda mm: (2 * mm - cost) / (_passage_quad(-mm, mm) * 2)
    best = optimize.minimize_scalar(lambda mm: -rate(mm), bounds=(cost / 2, 3.0), method="bounded",
                                    options={"xatol": 1e-6})
    assert m == pytest.approx(best.x, rel=1e-4)
    # the symmetric band is the 2-D optimum too: no (a, m) pair nearby does better
    two_d = optimize.minimize(lambda p: -ou.bertram_return_rate(FIT, p[0], p[1], cost), [-0.5, 0.8],
                              method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-14})
    assert two_d.x == pytest.approx([-m, m], abs=1e-3)
    assert b.entry_z == pytest.approx(m / FIT.sigma_eq) and b.exit_z == -b.entry_z
    assert b.return_per_bar == pytest.approx(2 * rate(m), rel=1e-6)
    assert ou.bertram(FIT, 0.4).entry > m  # dearer trades need a wider band


def test_band_cycle_time_against_greens_function_quadrature():
    """Desk rule at entry 1.5 / exit 0.5 z: passage -1.5 -> -0.5, then exit of (-1.5, 1.5) from -0.5."""
    se = FIT.sigma_eq
    lo, hi, x0 = -1.5 * se, 1.5 * se, -0.5 * se
    s = lambda v: math.exp(THETA * v * v / SIGMA**2)
    S = lambda v: integrate.quad(s, 0, v)[0]
    mdens = lambda v: 2 / (SIGMA**2 * s(v))
    sl, sr, sx = S(lo), S(hi), S(x0)
    green = lambda z: ((min(sx, S(z)) - sl) * (sr - max(sx, S(z))) / (sr - sl)) * mdens(z)
    exit_time = integrate.quad(green, lo, x0)[0] + integrate.quad(green, x0, hi)[0]
    expected = _passage_quad(-1.5 * se, -0.5 * se) + exit_time
    assert float(ou.band_cycle_bars(FIT, 1.5, 0.5)) == pytest.approx(expected, rel=1e-4)
    rate = float(ou.band_return_rate(FIT, 1.5, 0.5, 0.1))
    assert rate == pytest.approx((1.0 * se - 0.1) / expected, rel=1e-4)
    assert np.isnan(ou.band_return_rate(FIT, 1.0, 1.0, 0.1))


def test_band_cycle_time_against_monte_carlo():
    """Seeded Euler paths of the dimensionless OU (dt = 1e-3): entry 1.0 z, exit 0 z. Barriers checked once per
    step are crossed late; Broadie-Glasserman's correction moves them 0.5826 sqrt(dt) towards the start."""
    rng = np.random.default_rng(3)
    ve = 1.0 / math.sqrt(2)
    dt, n = 1e-3, 4000
    total = np.zeros(n)
    v = np.full(n, -ve)
    shift = 0.5826 * math.sqrt(dt)
    phase = np.zeros(n, dtype=int)  # 0: in the trade (until v >= 0), 1: flat (until |v| >= ve), 2: done
    while (phase < 2).any():
        live = phase < 2
        v[live] += -v[live] * dt + rng.normal(0, math.sqrt(dt), live.sum())
        total[live] += dt
        phase[(phase == 0) & (v >= -shift)] = 1
        phase[(phase == 1) & (np.abs(v) >= ve - shift)] = 2
    theta = 1.0
    one = ou.OUFit(theta, 0.0, 1.0, 1 / math.sqrt(2), math.exp(-1), math.log(2), 1000)
    assert float(ou.band_cycle_bars(one, 1.0, 0.0)) == pytest.approx(total.mean(), rel=0.05)


def test_optimal_band_beats_the_grid_and_user_choices():
    best = ou.optimal_band(FIT, 0.2)
    assert 0 <= best.exit_z < best.entry_z
    for e, x in ((2.0, 0.5), (1.0, 0.0), (best.entry_z + 0.2, best.exit_z), (best.entry_z, best.exit_z + 0.1)):
        assert best.return_per_bar >= float(ou.band_return_rate(FIT, e, x, 0.2)) - 1e-12
    assert "Best band" in best.summary()
    free = ou.bertram(FIT, 0.0)
    assert free.entry == 0.0
