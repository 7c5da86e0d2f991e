"""What an exchange symbol looks like: 2-30 upper-case letters or digits, e.g. BTCUSDT."""
from __future__ import annotations

import re

PATTERN = r"[A-Z0-9]{2,30}"
EXPECTED = "2-30 letters or digits such as BTCUSDT"
_RE = re.compile(PATTERN)


def is_symbol(text: str) -> bool:
    """True for an upper-case symbol such as BTCUSDT (normalise with `.strip().upper()` first)."""
    return isinstance(text, str) and _RE.fullmatch(text) is not None
