"""Download buttons that give the file on every click, also while the page refreshes itself.

Why not `st.download_button` inside a page's `run_every` fragment: Streamlit 1.67 draws it anew on every refresh.
A deferred button (`data=callable`) gets a new file id on each run and the old id is dropped at the end of the next
run of any fragment, so a click carrying the id the browser held a moment earlier fails on the server
(`MediaFileStorageError: Deferred file … not found`) and the browser gets no file and no message. A static button
(`data=bytes`) gets a new file whenever the bytes change, and the old file goes two runs later: the same race.

So each button is drawn once by the page's full run, outside the fragment, with `data=` an `Offer`: a callable
kept in the session whose content the fragment replaces on every refresh (`offer.set(make)`). The button's id
changes only with a full run (a control outside the fragment), and a click returns the view on the page at that
moment, made on Streamlit's worker thread (no Streamlit calls there: the makers are plain pandas).

One more race: the file a click produces is stored unreferenced and deleted at the end of the second script run
after it (any fragment of any session). A browser busy drawing a 1 s refresh fetched it too late (404, the
download "canceled"). So the offer also registers its bytes under one of `HELD` process-wide slots, as a static
download would be: the stored file (same bytes, type and name, hence the same id) stays until `HELD` later
clicks have taken its slot. This uses the media file manager of the pinned Streamlit (1.67).
"""
from __future__ import annotations

import itertools
import logging
import threading
from typing import Callable

import streamlit as st

log = logging.getLogger(__name__)

_OFFERS = "_tickdesk_download_offers"
HELD = 16                                  # files produced by clicks kept referenced, process-wide
_slots = itertools.cycle(range(HELD))
_slots_lock = threading.Lock()
_holding = threading.local()


class _NoContextNote(logging.Filter):
    """The media file manager asks for a script context, which a click's worker thread has none of (and needs
    none: the session id is only a namespace there); drop that warning for `_hold`'s call only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_holding, "active", False)


logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(_NoContextNote())


def _hold(body: bytes, mime: str, file_name: str) -> None:
    """Keep the file Streamlit stores for these bytes until `HELD` later clicks (see the module docstring)."""
    try:
        from streamlit import runtime

        if not runtime.exists():
            return
        with _slots_lock:
            slot = next(_slots)
        _holding.active = True
        try:
            runtime.get_instance().media_file_mgr.add(body, mime, f"tickdesk-download-{slot}", file_name=file_name,
                                                      is_for_static_download=True)
        finally:
            _holding.active = False
    except Exception:  # never lose the download over the keep-alive
        log.warning("could not hold the download %s", file_name, exc_info=True)


class Offer:
    """The newest content of one download button: a zero-argument function returning the file's bytes, or the
    reason there is none (then the file is a one-column CSV `note` saying so, never an empty download)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._make: Callable[[], bytes] | None = None
        self._why = "the page has not computed this view yet"
        self.file_name = "download.csv"   # as the button was last drawn with (set by `button`)
        self.mime = "text/csv"

    def set(self, make: Callable[[], bytes]) -> None:
        """The bytes of the view now on the page (computed only on click)."""
        with self._lock:
            self._make, self._why = make, ""

    def withhold(self, why: str) -> None:
        """No file for the current view; `why` in plain words (goes into the downloaded note)."""
        with self._lock:
            self._make, self._why = None, why

    @property
    def ready(self) -> bool:
        return self._make is not None

    def __call__(self) -> bytes:
        with self._lock:
            make, why = self._make, self._why
        if make is None:
            text = why.replace('"', "'")
            body = f'note\n"Nothing to download: {text}."\n'.encode()
        else:
            body = make()
        _hold(body, self.mime, self.file_name)
        return body


def offer(key: str) -> Offer:
    """This session's offer behind the button `key` (the same object on every run)."""
    offers: dict[str, Offer] = st.session_state.setdefault(_OFFERS, {})
    if key not in offers:
        offers[key] = Offer()
    return offers[key]


def button(label: str, key: str, file_name: str, help: str | None = None, mime: str = "text/csv", where=None
           ) -> Offer:
    """Draw the download button `key` (in `where`, a container, else here; call from the page's full run, not
    from a refreshing fragment) and return its offer for the fragment to fill."""
    o = offer(key)
    o.file_name, o.mime = file_name, mime
    (where or st).download_button(label, data=o, file_name=file_name, mime=mime, icon=":material/download:", on_click="ignore",
                       key=key, help=help)
    return o
