"""The rooms import what DESIGN.md's layout table allows (docs/architecture.md), and nothing else.

Read from the source with `ast` (imports at any depth, including the late ones inside functions), so a new
import that runs upward, DuckDB or SQL text outside tickstore, or an import cycle inside tickstore fails here.
"""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("core", "quantlib", "tickstore", "feed", "exchange", "history", "alerts", "dashboard", "pages")
DIRS = {"app_pages": "pages"}     # folder -> room, where they differ (the pages live in app_pages/)
CLI = {"core", "quantlib", "tickstore", "feed", "exchange", "history", "alerts"}
ALLOWED = {                       # room -> rooms of the project it may import (DESIGN.md; `core` everywhere)
    "core": set(),
    "quantlib": {"core"},
    "tickstore": {"core"},
    "feed": {"core", "tickstore"},
    "exchange": {"core"},
    "history": {"core", "tickstore"},
    "alerts": {"core", "tickstore", "quantlib"},
    "dashboard": {"core", "tickstore", "quantlib", "alerts", "history"},
    "pages": {"core", "dashboard"},
    "ingestor.py": CLI,
    "scanner.py": CLI,
}
SQL_RE = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|WITH|COPY|ATTACH)\s", re.S)


def _room(path: Path) -> str | None:
    rel = path.relative_to(ROOT)
    if rel.parts[0] in ROOMS or rel.parts[0] in DIRS:
        return DIRS.get(rel.parts[0], rel.parts[0])
    return {"streamlit_app.py": "pages", "ingestor.py": "ingestor.py", "scanner.py": "scanner.py"}.get(str(rel))


@cache  # parsed once per run: three tests read the same tree
def _sources() -> tuple[tuple[Path, str, ast.AST], ...]:
    folders = [*ROOMS, *DIRS]
    assert all((ROOT / f).is_dir() for f in folders if f != "pages"), "a room's folder moved: update ROOMS / DIRS"
    return tuple((path, room, ast.parse(path.read_text()))
                 for path in sorted(ROOT.glob("*.py")) + sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))
                 if (room := _room(path)) is not None)


def _imports(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def import_graph() -> dict[str, dict[str, set[str]]]:
    """room -> imported room (or 'duckdb') -> files doing it."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path, room, tree in _sources():
        for name in _imports(tree):
            top = name.split(".")[0]
            if (top in ROOMS and top != room) or top == "duckdb":
                graph[room][top].add(path.relative_to(ROOT).as_posix())
    return graph


def test_rooms_import_only_what_the_design_allows():
    graph = import_graph()
    wrong = {f"{room} -> {dep}: {', '.join(sorted(files))}" for room, deps in graph.items()
             for dep, files in deps.items() if dep != "duckdb" and dep not in ALLOWED[room]}
    assert not wrong, sorted(wrong)


def test_duckdb_and_sql_text_only_in_tickstore():
    duck = {room: files for room, deps in import_graph().items() for dep, files in deps.items()
            if dep == "duckdb" and room != "tickstore"}
    assert not duck, duck
    sql = [f"{path.relative_to(ROOT)}:{node.lineno}" for path, room, tree in _sources() if room != "tickstore"
           for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
           and SQL_RE.match(node.value)]
    assert not sql, sql


def test_no_import_cycle_between_tickstore_modules():
    mods = {p.stem: {n.split(".")[1] for n in _imports(ast.parse(p.read_text()))
                     if n.startswith("tickstore.") and n.count(".") == 1}
            for p in (ROOT / "tickstore").glob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(m == goal or (m not in seen and reaches(m, goal, seen | {m})) for m in mods.get(start, ()))

    cycles = sorted(m for m in mods if reaches(m, m, {m}))
    assert not cycles, cycles
