"""Number inputs that say plainly when a typed value is out of range.

Streamlit's own `min_value` / `max_value` refuse an out-of-range number in the browser: the box keeps showing
what was typed (0, 1001, -5) while the app goes on with the previous value, and only a small error icon with a
tooltip tells why. Here the box takes any number; a value outside the range is clamped, and a warning under the
box says what was typed, the range, and the value used.
"""
from __future__ import annotations

from typing import Any

import streamlit as st


def bounded_number(label: str, lo: float, hi: float, value: float, step: float | None = None, *, key: str,
                   where: Any = None, note: Any = None, help: str | None = None, **kwargs) -> float:
    """A number input in `where` (default: the page) whose value is clamped to [lo, hi], with a warning in `note`
    (default: `where`) when it had to be. Returns the value to use (an int when `value` and `step` are ints)."""
    where = where if where is not None else st
    note = note if note is not None else where
    rng = f"{_num(lo)} to {_num(hi)}"
    typed = where.number_input(label, value=value, step=step, key=key,
                               help=f"{help} Range: {rng}." if help else f"Range: {rng}.", **kwargs)
    if typed is None:
        return value
    if lo <= typed <= hi:
        return typed
    used = type(typed)(lo if typed < lo else hi)
    note.warning(f"**{label}**: {_num(typed)} is out of range; expected {rng}. Using {_num(used)}.",
                 icon=":material/warning:")
    return used


def _num(x: float) -> str:
    return f"{x:,.10g}"
