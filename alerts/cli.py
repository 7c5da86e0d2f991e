"""Manage alert rules from the command line (scripts, cron jobs; the app writes in-process through RuleStore).

    python -m alerts.cli --db data/ticks.duckdb list
    python -m alerts.cli --db data/ticks.duckdb create '{"symbol": "BTCUSDT", "metric": "price", "op": ">", "threshold": 70000}'
    python -m alerts.cli --db data/ticks.duckdb update 3 '{...every field...}'
    python -m alerts.cli --db data/ticks.duckdb enable 3 | disable 3 | delete 3

Prints one JSON object: {"ok": true, "rule": {...}} / {"ok": true, "rules": [...]}, or {"ok": false, "error": ...,
"kind": "invalid" | "missing" | "busy" | "damaged" | "not_found" | "error", "errors": {field: message}}. Exit code 0
on success, 2 for bad input (invalid rule, unknown id, a file that cannot be used: missing, damaged, disk full),
1 when the file stayed locked (try again).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from alerts.rules import RuleStore, RuleValidationError
from tickstore.connection import StoreBusy, StoreDamaged, StoreError, StoreMissing


def _parse_fields(text: str) -> dict:
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuleValidationError({"json": f"is not valid JSON ({exc.msg}); expected an object of rule fields"}) \
            from None
    if not isinstance(fields, dict):
        raise RuleValidationError({"json": "is not an object; expected {\"field\": value, ...}"})
    return fields


def run(argv: list[str]) -> tuple[int, dict]:
    p = argparse.ArgumentParser(prog="python -m alerts.cli", description="Manage tickdesk alert rules.")
    p.add_argument("--db", required=True, help="the tick file (DuckDB)")
    p.add_argument("--lock-budget", type=float, default=5.0, help="seconds to wait for the file lock (default 5)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    sub.add_parser("create").add_argument("fields", help="JSON object of rule fields")
    up = sub.add_parser("update")
    up.add_argument("id", type=int)
    up.add_argument("fields", help="JSON object of every rule field")
    for name in ("enable", "disable", "delete"):
        sub.add_parser(name).add_argument("id", type=int)
    args = p.parse_args(argv)
    store = RuleStore(args.db, lock_budget_s=args.lock_budget)
    try:
        if args.cmd == "list":
            return 0, {"ok": True, "rules": [asdict(r) for r in store.list()]}
        if args.cmd == "create":
            return 0, {"ok": True, "rule": asdict(store.create(_parse_fields(args.fields)))}
        if args.cmd == "update":
            return 0, {"ok": True, "rule": asdict(store.update(args.id, _parse_fields(args.fields)))}
        if args.cmd in ("enable", "disable"):
            store.set_enabled(args.id, args.cmd == "enable")
        else:
            store.delete(args.id)
        return 0, {"ok": True}
    except RuleValidationError as exc:
        return 2, {"ok": False, "kind": "invalid", "error": str(exc), "errors": exc.errors}
    except KeyError as exc:
        return 2, {"ok": False, "kind": "not_found", "error": str(exc).strip("'\"")}
    except StoreMissing as exc:
        return 2, {"ok": False, "kind": "missing", "error": str(exc)}
    except StoreBusy as exc:
        return 1, {"ok": False, "kind": "busy", "error": str(exc)}
    except StoreDamaged as exc:
        return 2, {"ok": False, "kind": "damaged", "error": str(exc)}
    except StoreError as exc:
        return 2, {"ok": False, "kind": "error", "error": str(exc)}


def main(argv: list[str] | None = None) -> int:
    code, out = run(list(sys.argv[1:] if argv is None else argv))
    sys.stdout.write(json.dumps(out, default=str) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
