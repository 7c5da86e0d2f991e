"""Duration strings: a number and a unit, e.g. "500ms", "90s", "1.5m", "6h", "7d", "2w"."""
from __future__ import annotations

import re
from collections.abc import Iterable

UNIT_SECONDS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3_600.0, "d": 86_400.0, "w": 604_800.0}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
_EXAMPLES = {"ms": "500ms", "s": "90s", "m": "30m", "h": "6h", "d": "7d", "w": "2w"}


class DurationError(ValueError):
    """A duration string that is not understood; the message says what is expected."""


def parse_duration(text: str, units: Iterable[str] = ("s", "m", "h", "d"), *, bare_seconds: bool = False,
                   whole: bool = False) -> float:
    """`text` in seconds. `units` lists the accepted units (any of UNIT_SECONDS); `bare_seconds` also accepts a
    plain number as seconds; `whole` accepts whole numbers only ("7d", not "1.5d"). Case-insensitive."""
    units = tuple(units)
    m = _RE.match(text.lower()) if isinstance(text, str) else None
    ok = m is not None and (m.group(2) in units or (bare_seconds and m.group(2) == "")) \
        and not (whole and "." in m.group(1))
    if not ok:
        examples = ", ".join(_EXAMPLES[u] for u in units)
        kind = "a whole number" if whole else "a number"
        raise DurationError(f"bad duration {text!r}; expected {kind} and a unit ({'/'.join(units)}), "
                            f"e.g. {examples}" + (" (a plain number means seconds)" if bare_seconds else ""))
    return float(m.group(1)) * (UNIT_SECONDS[m.group(2)] if m.group(2) else 1.0)


def duration_text(seconds: float) -> str:
    """A duration in words, two units at most: '0.25 s', '45 s', '1 min 36 s', '5 min', '2 h 05 min', '3 d 4 h'."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    rest = int(round(seconds))
    d, rest = divmod(rest, 86_400)
    h, rest = divmod(rest, 3_600)
    m, s = divmod(rest, 60)
    if d:
        return f"{d} d {h} h" if h else f"{d} d"
    if h:
        return f"{h} h {m:02d} min"
    return f"{m} min {s} s" if s else f"{m} min"
