"""What an exchange symbol looks like: 2-30 upper-case letters or digits, e.g. BTCUSDT."""
from __future__ import annotations

import re

PATTERN = r"[A-Z0-9]{2,30}"
EXPECTED = "2-30 letters or digits such as BTCUSDT"
_RE = re.compile(PATTERN)


def is_symbol(text: str) -> bool:
    """True for an upper-case symbol such as BTCUSDT (normalise with `.strip().upper()` first)."""
    return isinstance(text, str) and _RE.fullmatch(text) is not None


class SymbolError(ValueError):
    """A symbol list that is empty or holds something that is not a symbol; the message says what is expected."""


def parse_symbols(text: str) -> list[str]:
    """'btcusdt, ethusdt' → ['BTCUSDT', 'ETHUSDT'] (upper case, first occurrence kept); SymbolError naming the bad
    ones or saying the list is empty."""
    syms = [s.strip().upper() for s in (text or "").split(",") if s.strip()]
    if not syms:
        raise SymbolError("no symbols given; expected a comma-separated list such as btcusdt,ethusdt")
    bad = [s for s in syms if not is_symbol(s)]
    if bad:
        raise SymbolError(f"bad symbol(s) {', '.join(bad)}; expected {EXPECTED}")
    return list(dict.fromkeys(syms))
