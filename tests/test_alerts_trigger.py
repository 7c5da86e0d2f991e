"""alerts.trigger: edge-triggered firing, priming, hysteresis and cooldown (reference: a direct re-statement of
the crossing definition, checked on hypothesis-generated paths)."""
from __future__ import annotations

import datetime as dt
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.trigger import Outcome, TriggerState, step

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def run(values, op, thr, hyst=0.0, cooldown=0.0, dt_s=1.0, state=None):
    state = state or TriggerState()
    return [step(state, op, thr, hyst, cooldown, v, T0 + dt.timedelta(seconds=i * dt_s)) for i, v in enumerate(values)], state


def fired_at(outcomes):
    return [i for i, o in enumerate(outcomes) if o is Outcome.FIRED]


def test_crosses_above_first_observation_only_primes():
    out, st_ = run([105, 106, 99, 101, 102, 99.5, 100.5], "crosses_above", 100)
    assert out[0] is Outcome.PRIMED
    assert fired_at(out) == [3, 6]
    assert st_.fired == 2


def test_crosses_above_primed_below_fires_on_first_cross():
    out, _ = run([99, 100, 100.01], "crosses_above", 100)
    assert out[0] is Outcome.PRIMED
    assert fired_at(out) == [2]  # exactly at the threshold is not above it


def test_crosses_below_mirrors():
    out, _ = run([95, 101, 99, 98, 100, 99.9], "crosses_below", 100)
    assert out[0] is Outcome.PRIMED
    assert fired_at(out) == [2, 5]


def test_level_op_fires_on_first_observation_and_only_on_edges():
    out, _ = run([105, 106, 107, 100, 101, 102], ">", 100)
    assert fired_at(out) == [0, 4]
    out, _ = run([95, 94, 100, 99], "<", 100)
    assert fired_at(out) == [0, 3]


def test_hysteresis_stops_a_hovering_value_from_refiring():
    hover = [99.9, 100.1, 99.95, 100.05, 99.99, 100.2, 99.6, 100.3]
    out, _ = run(hover, "crosses_above", 100, hyst=0.5)
    assert fired_at(out) == [1]  # never back to <= 99.5
    out, _ = run(hover + [99.5, 100.01], "crosses_above", 100, hyst=0.5)
    assert fired_at(out) == [1, 9]
    out, _ = run(hover, "crosses_above", 100, hyst=0.0)
    assert fired_at(out) == [1, 3, 5, 7]


def test_hysteresis_rearm_then_cross_fires_again():
    # crosses_below 100, h=0.5: fires at 99.9, 100.2 does not re-arm (< 100.5), 101 does, 98 fires again
    out, _ = run([101, 99.9, 100.2, 101.0, 100.1, 98], "crosses_below", 100, hyst=0.5)
    assert [o for o in out if o is Outcome.REARMED] == [Outcome.REARMED]
    assert fired_at(out) == [1, 5]


def test_cooldown_swallows_a_second_crossing_then_allows_later_ones():
    values = [99, 101, 99, 101, 99, 101, 99, 101]  # one observation every 10 s; crossings at t=10, 30, 50, 70
    out, st_ = run(values, "crosses_above", 100, cooldown=25.0, dt_s=10.0)
    # t=10 fires; t=30 is 20 s after it -> swallowed; t=50 is 40 s after the last firing -> fires; t=70 swallowed
    assert fired_at(out) == [1, 5]
    assert [i for i, o in enumerate(out) if o is Outcome.SUPPRESSED] == [3, 7]
    assert st_.fired == 2 and st_.suppressed == 2


def test_cooldown_restored_from_last_firing():
    state = TriggerState(last_fired=T0)
    out, _ = run([99, 101], "crosses_above", 100, cooldown=60, state=state)
    assert out[1] is Outcome.SUPPRESSED


def test_missing_values_change_nothing():
    out, st_ = run([None, math.nan, 99, None, math.nan, 101], "crosses_above", 100)
    assert out[:2] == [Outcome.NONE, Outcome.NONE]
    assert out[2] is Outcome.PRIMED
    assert fired_at(out) == [5]
    assert st_.last_value == 101


def reference_crossings(values, thr, hyst):
    """Indices where an upward crossing of `thr` fires: value > thr, with the path having been at or below
    thr - hyst (or below thr before the first firing, starting from the priming value) since the last firing."""
    fires = []
    low_since_fire = values[0] <= thr
    for i in range(1, len(values)):
        v = values[i]
        if v > thr and low_since_fire:
            fires.append(i)
            low_since_fire = False
        elif v <= thr - hyst:
            low_since_fire = True
    return fires


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-20, 20), min_size=1, max_size=80), st.sampled_from([0, 0, 1, 3, 7]))
def test_crosses_above_matches_reference_on_random_paths(steps, hyst):
    values, v = [], 0.0
    for s in steps:
        v += s / 4
        values.append(v)
    out, _ = run(values, "crosses_above", 0.3, hyst=hyst / 4)
    assert fired_at(out) == reference_crossings(values, 0.3, hyst / 4)
    # the mirror image under crosses_below
    out, _ = run([-x for x in values], "crosses_below", -0.3, hyst=hyst / 4)
    assert fired_at(out) == reference_crossings(values, 0.3, hyst / 4)
