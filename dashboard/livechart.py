"""Plotly charts that update in place on live refreshes, keeping the user's zoom and pan.

Why not plain `st.plotly_chart`: in Streamlit 1.67 its element id is derived from the figure JSON, so every data
refresh gives the chart a new React key — the chart is unmounted and mounted again, zoom/pan are lost and old
plot nodes linger during the swap (upstream: streamlit/streamlit#5107, fixed by PR #16052 in later releases).

So live charts go through a tiny `st.components.v2` component whose identity is its `key`: Streamlit keeps the
same DOM node across reruns and the component calls `Plotly.react` with the new figure, which honours
`layout.uirevision` (same value → the user's zoom/pan/legend state survive). plotly.js itself is the copy shipped
in the pinned `plotly` Python package, served by Streamlit's static file serving (`server.enableStaticServing`,
set in .streamlit/config.toml) from `static/` next to streamlit_app.py (copied there on first use), fetched with a
`Range` header so Streamlit sends it as is instead of gzipping 4.8 MB on the fly for every fresh browser.
When static serving is off or the copy fails, charts fall back to `st.plotly_chart` (zoom then resets on refresh).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import plotly
import streamlit as st

log = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = APP_DIR / "static"
PLOTLY_JS_SOURCE = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLOTLY_JS_NAME = f"plotly-{plotly.__version__}.min.js"
COMPONENT_NAME = "tickdesk_live_plotly"

_JS = """
function scriptTag(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.async = true;
    s.onload = () => resolve(window.Plotly);
    s.onerror = () => reject(new Error("cannot load " + src));
    document.head.appendChild(s);
  });
}

function loadPlotly(src) {
  if (window.Plotly && window.Plotly.react) return Promise.resolve(window.Plotly);
  if (!window.__tickdeskPlotly) {
    // Fetched as a Range request: Streamlit gzips /app/static responses on the fly (4.8 MB at level 9: ~0.2 s of
    // server CPU per fresh browser, seconds while the server is busy) but never partial (206) ones.
    window.__tickdeskPlotly = fetch(src, { headers: { Range: "bytes=0-" } })
      .then((r) => { if (!r.ok) throw new Error(String(r.status)); return r.blob(); })
      .then((blob) => {
        const url = URL.createObjectURL(new Blob([blob], { type: "text/javascript" }));
        return scriptTag(url).finally(() => URL.revokeObjectURL(url));
      })
      .catch(() => scriptTag(src))
      .catch((err) => { window.__tickdeskPlotly = null; throw err; });
  }
  return window.__tickdeskPlotly;
}

export default function (component) {
  const { data, parentElement } = component;
  if (!data.spec) {  // preload only: fetch and compile plotly.js while the server computes the first charts
    loadPlotly(data.src).catch(() => {});
    return;
  }
  let el = parentElement.querySelector(".tickdesk-plot");
  if (!el) {
    el = document.createElement("div");
    el.className = "tickdesk-plot";
    el.style.width = "100%";
    parentElement.appendChild(el);
  }
  const fig = JSON.parse(data.spec);
  el.style.minHeight = (fig.layout && fig.layout.height ? fig.layout.height : 300) + "px";
  el.__tickdeskLatest = fig;  // refreshes that arrive while plotly.js loads: only the newest figure is drawn
  loadPlotly(data.src)
    .then((Plotly) => { if (el.__tickdeskLatest === fig) return Plotly.react(el, fig.data, fig.layout, data.config); })
    .catch((err) => { el.textContent = "Chart unavailable: " + err.message; });
  return () => { if (window.Plotly && window.Plotly.purge) { window.Plotly.purge(el); } };
}
"""

_static_ready: bool | None = None
_mount = None


def _ensure_static() -> bool:
    """Copy plotly.min.js into static/ once per process; False when charts must fall back to st.plotly_chart."""
    global _static_ready
    if _static_ready is None:
        target = STATIC_DIR / PLOTLY_JS_NAME
        try:
            if not (target.exists() and target.stat().st_size == PLOTLY_JS_SOURCE.stat().st_size):
                STATIC_DIR.mkdir(exist_ok=True)
                tmp = target.with_suffix(".tmp")
                shutil.copyfile(PLOTLY_JS_SOURCE, tmp)
                tmp.replace(target)
            _static_ready = True
        except OSError as exc:
            log.warning("cannot provide %s for live charts (%s); using st.plotly_chart", target, exc)
            _static_ready = False
    return _static_ready


def _script_url() -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return "/" + "/".join(p for p in (base, "app", "static", PLOTLY_JS_NAME) if p)


def available() -> bool:
    """True when live charts can update in place (static serving on and plotly.js in place)."""
    return bool(st.get_option("server.enableStaticServing")) and _ensure_static()


def _renderer():
    """The component's mount command, registered once per Streamlit runtime (AppTest makes one per test)."""
    from streamlit.runtime import Runtime

    global _mount
    if _mount is None or Runtime.instance().bidi_component_registry.get(COMPONENT_NAME) is None:
        _mount = st.components.v2.component(COMPONENT_NAME, js=_JS, isolate_styles=False)
    return _mount


def preload() -> None:
    """Start loading plotly.js in the browser now (an invisible element; call it before the first chart)."""
    if available():
        _renderer()(data={"spec": None, "src": _script_url()}, key="tickdesk_plotly_preload", width="stretch")


def draw(fig: dict, key: str, config: dict) -> None:
    """Draw `fig` (a Plotly figure dict) under `key`; on reruns the same chart is updated in place (see the module docstring)."""
    if not available():
        st.plotly_chart(fig, key=key, config=config, width="stretch")
        return
    from dashboard import plotjson  # here, not at the top: the entrypoint's preload() must not wait for plotly.io

    _renderer()(data={"spec": plotjson.to_json(fig), "src": _script_url(),
                    "config": {"responsive": True, **config}}, key=key, width="stretch")
