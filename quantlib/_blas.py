"""Run quantlib's small dense linear algebra with one BLAS thread.

The problems here are tall and thin (10k x 40 at most). Multi-threaded OpenBLAS gains nothing on them
and, when the cores are busy (an ingestor, a Streamlit server and a browser on one laptop), its spinning
threads can turn a 4 ms QR into 100+ ms. `single_threaded` limits BLAS to one thread for the duration
of a call and restores the previous limit afterwards (nesting is fine).

OpenBLAS's limit is process-wide, so threadpoolctl lets only one Python thread (the first to set a
limit, while it lives) change it; calls from other threads then run with whatever limit is in force,
which is only ever slower, never different. Without threadpoolctl (a scikit-learn dependency) the
decorator does nothing.
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
_controller = None


def _get_controller():
    global _controller
    if _controller is None and ThreadpoolController is not None:
        with _lock:
            if _controller is None:
                _controller = ThreadpoolController()  # after numpy / scipy loaded their BLAS
    return _controller


def single_threaded(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run `func` with BLAS limited to one thread, then restore the previous limit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        controller = _get_controller()
        if controller is None:  # pragma: no cover
            return func(*args, **kwargs)
        limiter = controller.limit(limits=1, user_api="blas")
        try:
            return func(*args, **kwargs)
        finally:
            limiter.restore_original_limits()

    return wrapper
