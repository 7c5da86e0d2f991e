"""Shared bits of the bench scripts: a plain-text / Markdown table, machine facts, and writing docs/bench-*.md.

Not a benchmark itself (running it prints the machine facts only).
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DOCS = ROOT / "docs"


def fmt(v: object) -> str:
    if isinstance(v, float):
        if v != v:
            return "–"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


@dataclass
class Table:
    """Rows of equal length under `columns`; `text()` for the terminal, `markdown()` for docs."""

    title: str
    columns: Sequence[str]
    rows: list[list] = field(default_factory=list)

    def add(self, *values: object) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"row has {len(values)} values, table {self.title!r} has {len(self.columns)} columns")
        self.rows.append(list(values))

    def _cells(self) -> list[list[str]]:
        return [[fmt(v) for v in r] for r in self.rows]

    def text(self) -> str:
        cells = self._cells()
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        line = "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(self.columns, widths)))
        out = [self.title, line, "-" * len(line)]
        for r in cells:
            out.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
        return "\n".join(out)

    def markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|"
        body = ["| " + " | ".join(r) + " |" for r in self._cells()]
        return "\n".join([f"**{self.title}**", "", head, sep, *body])


def machine() -> str:
    """One line: cores, memory, load, Python and library versions (figures depend on all of them)."""
    import duckdb
    import pyarrow

    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:  # pragma: no cover
        mem = "?"
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores, {mem} RAM, load avg {load} at the end of the run; Python "
            f"{platform.python_version()}, DuckDB {duckdb.__version__}, pyarrow {pyarrow.__version__}; "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")


def pct(values: Sequence[float], q: float) -> float:
    """q-th percentile (0..100) by linear interpolation; nan for no values."""
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


def write_doc(name: str, title: str, command: str, tables: Sequence[Table], why: str, notes: str = "") -> Path:
    """docs/bench-<name>.md: how it was run, the machine, the tables, and why the figures are what they are."""
    DOCS.mkdir(exist_ok=True)
    parts = [f"# {title}", "", f"Run: `{command}`  ", f"Machine: {machine()}", ""]
    for t in tables:
        parts += [t.markdown(), ""]
    parts += ["## Why", "", why.strip(), ""]
    if notes.strip():
        parts += [notes.strip(), ""]
    path = DOCS / f"bench-{name}.md"
    path.write_text("\n".join(parts))
    return path


if __name__ == "__main__":
    print(machine())
