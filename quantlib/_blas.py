"""Run quantlib's small dense linear algebra with one BLAS thread.

The problems here are tall and thin (10k x 40 at most). Multi-threaded OpenBLAS gains nothing on them
and, when the cores are busy (an ingestor, a Streamlit server and a browser on one laptop), its spinning
threads make a 5 ms QR take 100+ ms. `single_threaded` limits BLAS to one thread for the duration of a
call; nested and concurrent callers share one reference-counted limit, and the original thread counts
come back when the last caller leaves. Without threadpoolctl (a scikit-learn dependency) it does nothing.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - scikit-learn always brings it
    ThreadpoolController = None

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_depth = 0
_controller = None
_limiter = None


def _enter() -> None:
    global _depth, _controller, _limiter
    with _lock:
        if _depth == 0 and ThreadpoolController is not None:
            if _controller is None:
                _controller = ThreadpoolController()
            _limiter = _controller.limit(limits=1, user_api="blas")
        _depth += 1


def _exit() -> None:
    global _depth, _limiter
    with _lock:
        _depth -= 1
        if _depth == 0 and _limiter is not None:
            _limiter.restore_original_limits()
            _limiter = None


def single_threaded(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run `func` with BLAS limited to one thread."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        _enter()
        try:
            return func(*args, **kwargs)
        finally:
            _exit()

    return wrapper
