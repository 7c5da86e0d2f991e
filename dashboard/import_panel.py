"""Data page panel: import uploaded Binance public-data dumps into the tick file (same checks as the CLI).

The import runs in this process and writes one short transaction per batch through the app's one write path
(`tickstore.appwrite.app_write`, via `history.dumps`), waiting while the ingestor or this server's readers hold
the file; failures are told apart by exception class.
"""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core.paths import DEFAULT_DB
from dashboard import data
from history.dumps import DumpError, Progress, import_uploads
from tickstore.connection import StoreBusy, StoreError

LOCK_BUDGET_S = 30.0


def import_target(db_path: str | os.PathLike) -> Path:
    """The live tick file beside a demo file (`data/ticks.duckdb`, the one `make run` streams into), where the
    panel imports while the app shows simulated ticks."""
    p = Path(db_path)
    target = p.with_name(DEFAULT_DB.name)
    return target if target.resolve() != p.resolve() else p.with_name(f"{p.stem}-history{p.suffix or '.duckdb'}")


def _opened(target: Path) -> str:
    """How to open the app on `target`."""
    if target == DEFAULT_DB or target.resolve() == DEFAULT_DB.resolve():
        return "`make run` streams into it and shows it"
    return f"open it with `TICKDESK_DB={target} streamlit run streamlit_app.py`"


def render_import_panel(db_path: str | os.PathLike) -> None:
    """Uploader + Import button; reports what was stored, or why nothing was. While the app shows the demo file
    (simulated ticks, which real history never joins), the import goes into the live tick file beside it."""
    st.subheader("Import Binance history")
    st.caption("Trades or aggTrades dumps from data.binance.vision (`BTCUSDT-trades-2024-01-01.zip`, daily or "
               "monthly, spot or USD-M, or the CSV inside). Ids already stored are skipped; a wrong file changes "
               "nothing. Spot aggTrades are stored as market `spot_agg` and USD-M trades as `usdm_trades` (their "
               "ids differ from the live streams'). Larger files: `python ingestor.py import PATH...`.")
    demo = data.file_kind(str(db_path)) == "demo"
    target = import_target(db_path) if demo else Path(db_path)
    if demo:
        st.info(f"This app shows `{db_path}`, the demo file of simulated ticks, and real Binance history never "
                f"joins simulated data: the import goes into the live tick file `{target}` instead ({_opened(target)}"
                "). To look at a trades dump here without importing it, upload its CSV under **Upload** above.",
                icon=":material/info:")
    files = st.file_uploader("Dump files", type=["zip", "csv"], accept_multiple_files=True, key="import_dump_files")
    market = st.radio("Market", ["auto", "spot", "usdm"], horizontal=True, key="import_dump_market",
                      help="auto: from the column layout (spot trades 7 columns, USD-M 6; aggTrades 8 / 7)")
    label = f"Import into {target.name}" if demo else "Import into the tick file"
    if not st.button(label, key="import_dump_go", disabled=not files):
        return
    bar = st.progress(0.0, text="Checking…")

    def on_progress(p: Progress) -> None:
        frac = min(1.0, p.done / p.total) if p.total else 0.0
        verb = "Checking" if p.stage == "check" else "Importing"
        bar.progress(frac, text=f"{verb} {p.file} ({p.index}/{p.files})")

    try:
        results = import_uploads([(f.name, f.getvalue()) for f in files], target,
                                 market=None if market == "auto" else market, progress=on_progress,
                                 lock_budget_s=LOCK_BUDGET_S)
    except DumpError as exc:
        bar.empty()
        st.error(f"Nothing imported. {exc}")
        return
    except StoreBusy:
        bar.empty()
        st.error(f"The tick file stayed locked for {LOCK_BUDGET_S:.0f}s. Batches already stored are kept; "
                 "import the same files again to resume.")
        return
    except StoreError as exc:
        bar.empty()
        st.error(f"Cannot write the tick file: {exc}")
        return
    bar.empty()
    new = sum(r.inserted for r in results)
    where = f" into `{target}` ({_opened(target)}; this demo app keeps showing the simulated ticks)" if demo else ""
    st.success(f"Imported {new:,} new ticks from {len(results)} file(s){where}.")
    for r in results:
        st.markdown(f"- {r.summary()}")
    st.cache_data.clear()   # charts and tables show the new history on the next run
