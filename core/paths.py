"""Where the tick file lives unless told otherwise."""
from __future__ import annotations

import os
from pathlib import Path

DB_ENV = "TICKDESK_DB"
DEFAULT_DB = Path("data/ticks.duckdb")
DEMO_DB = Path("data/demo.duckdb")   # --demo: simulated data never mixes with real data


def default_db_path() -> Path:
    """The app's tick file: `$TICKDESK_DB`, else `data/ticks.duckdb`."""
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)
