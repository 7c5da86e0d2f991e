"""Edge-triggered firing with hysteresis and cooldown: one small state machine per rule.

For `>` (and `crosses_above`) the condition is `value > threshold`; once the rule fires it is disarmed until
the value falls back to `threshold - hysteresis` or lower. `<` / `crosses_below` mirror that. A level op
(`>`/`<`) fires on its first observation if the condition already holds; a crosses op uses its first
observation only to prime (armed if the value is on the near side), so it never fires at startup.
A firing within `cooldown_s` of the previous one is swallowed (the rule disarms as if it had fired).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from enum import Enum


class Outcome(Enum):
    NONE = "none"          # nothing happened
    PRIMED = "primed"      # first observation of a crosses rule
    FIRED = "fired"
    SUPPRESSED = "suppressed"  # would have fired, but within the cooldown
    REARMED = "rearmed"


@dataclass
class TriggerState:
    """Mutable per-rule state kept in memory by the engine."""

    armed: bool | None = None          # None until the first observation
    last_value: float | None = None
    last_fired: dt.datetime | None = None
    fired: int = 0
    suppressed: int = 0


def _above(op: str) -> bool:
    return op in (">", "crosses_above")


def step(state: TriggerState, op: str, threshold: float, hysteresis: float, cooldown_s: float,
         value: float | None, now: dt.datetime) -> Outcome:
    """Feed one observation; updates `state` and says what happened. None / NaN values change nothing."""
    if value is None or math.isnan(value):
        return Outcome.NONE
    above = _above(op)
    cond = value > threshold if above else value < threshold
    rearm = value <= threshold - hysteresis if above else value >= threshold + hysteresis
    state.last_value = value
    if state.armed is None:
        if op in ("crosses_above", "crosses_below"):
            state.armed = not cond
            return Outcome.PRIMED
        state.armed = True
    if state.armed and cond:
        state.armed = False
        if state.last_fired is not None and (now - state.last_fired).total_seconds() < cooldown_s:
            state.suppressed += 1
            return Outcome.SUPPRESSED
        state.last_fired = now
        state.fired += 1
        return Outcome.FIRED
    if not state.armed and rearm:
        state.armed = True
        return Outcome.REARMED
    return Outcome.NONE
