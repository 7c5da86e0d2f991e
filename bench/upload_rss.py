"""Memory of a CSV upload: peak RSS while `dashboard.uploads.parse_csv` validates and parses an ~84 MB file.

    python bench/upload_rss.py [--mb 84] [--baseline 6bd5461] [--no-doc]

Three files of about --mb MB each, built in memory: our own tick download (`time,price,qty,symbol,trade_id,
is_buyer_maker`, ISO times), a Binance trades dump (7 columns, no header, epoch ms) and Binance 1s klines (12 columns,
no header). Each is parsed in a fresh child process, once by the parser of the baseline commit (`git show
REV:dashboard/uploads.py`, loaded as a module) and once by this tree's, so both start from the same imports and the
file's bytes already in memory (as in the Streamlit server, which holds the upload). Reported: RSS before the parse,
peak RSS during it (sampled every 5 ms), the peak minus the before (what the parse costs), CPU seconds, and whether
both parsers returned the same frames. No assertions on the figures.
"""
from __future__ import annotations

import sys

if "--child" in sys.argv:
    import report  # noqa: F401  (puts the repo root on sys.path)

import argparse
import importlib.util
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
T0_MS = 1_714_521_600_000


def build(kind: str, mb: float) -> bytes:
    """About `mb` MB of one file kind (deterministic)."""
    rng = np.random.default_rng(7)
    target = int(mb * 2**20)
    rows_est = {"ticks": target // 80, "trades": target // 62, "klines": target // 120}[kind]
    n = rows_est
    price = 60_000 + np.cumsum(rng.normal(0, 2, n))
    qty = rng.exponential(0.05, n)
    if kind == "ticks":
        ms = T0_MS + np.cumsum(rng.integers(0, 40, n))
        iso = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
        lines = [f"{t}Z,{p:.2f},{q:.6f},BTCUSDT,{i},{'true' if b else 'false'}"
                 for t, p, q, i, b in zip(iso, price, qty, range(10**9, 10**9 + n), rng.random(n) < 0.5)]
        text = "time,price,qty,symbol,trade_id,is_buyer_maker\n" + "\n".join(lines) + "\n"
    elif kind == "trades":
        ms = T0_MS + np.cumsum(rng.integers(0, 40, n))
        lines = [f"{i},{p:.2f},{q:.6f},{p * q:.6f},{t},{'True' if b else 'False'},True"
                 for i, p, q, t, b in zip(range(10**9, 10**9 + n), price, qty, ms, rng.random(n) < 0.5)]
        text = "\n".join(lines) + "\n"
    else:
        lines = []
        for k in range(n):
            o = price[k]
            c = o + rng.normal(0, 1)
            h, lo = max(o, c) + abs(rng.normal(0, 1)), min(o, c) - abs(rng.normal(0, 1))
            v = qty[k] * 50
            t = T0_MS + k * 1000
            lines.append(f"{t},{o:.2f},{h:.2f},{lo:.2f},{c:.2f},{v:.5f},{t + 999},{v * c:.4f},{k % 50 + 1},"
                         f"{v / 2:.5f},{v * c / 2:.4f},0")
        text = "\n".join(lines) + "\n"
    return text.encode()


NAMES = {"ticks": "BTCUSDT-ticks.csv", "trades": "BTCUSDT-trades-2024-05-01.csv", "klines": "BTCUSDT-1s-2024-05-01.csv"}


def child(args: argparse.Namespace) -> dict:
    import psutil

    if args.module == "baseline":
        spec = importlib.util.spec_from_file_location("uploads_baseline", args.source)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["uploads_baseline"] = mod
        spec.loader.exec_module(mod)
    else:
        from dashboard import uploads as mod
    data = Path(args.data).read_bytes()
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], proc.memory_info().rss)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    parsed = mod.parse_csv(NAMES[args.kind], data)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    stop.set()
    th.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    digest = {s: [len(f), str(f.dtypes.to_dict()), float(f.select_dtypes("number").sum().sum())]
              for s, f in parsed.frames.items()}
    return {"before": before, "peak": peak[0], "cpu": cpu, "wall": wall, "digest": digest,
            "rows": sum(len(f) for f in parsed.frames.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=float, default=84.0)
    p.add_argument("--baseline", default="6bd5461")
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--module", help=argparse.SUPPRESS)
    p.add_argument("--source", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    sys.path.insert(0, str(HERE))
    import report

    mib = 2**20
    t = report.Table(f"Parsing one ~{args.mb:g} MB CSV upload (fresh process each), MiB / s",
                     ["file", "code", "MB", "rows", "RSS before", "peak RSS", "parse cost (peak - before)", "CPU s",
                      "same frames"])
    with tempfile.TemporaryDirectory(prefix="upload-rss-") as tmp:
        base_src = Path(tmp) / "uploads_baseline.py"
        base_src.write_bytes(subprocess.run(["git", "-C", str(ROOT), "show", f"{args.baseline}:dashboard/uploads.py"],
                                            check=True, capture_output=True).stdout)
        for kind in ("ticks", "trades", "klines"):
            data = build(kind, args.mb)
            path = Path(tmp) / f"{kind}.csv"
            path.write_bytes(data)
            results = {}
            for label, module in ((f"baseline {args.baseline}", "baseline"), ("this tree", "tree")):
                r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "--module", module,
                                    "--source", str(base_src), "--data", str(path), "--kind", kind],
                                   capture_output=True, text=True, cwd=str(ROOT))
                if r.returncode:
                    raise SystemExit(f"{kind} / {label} failed:\n{r.stderr[-3000:]}")
                results[label] = json.loads(r.stdout.strip().splitlines()[-1])
            same = len({json.dumps(v["digest"], sort_keys=True) for v in results.values()}) == 1
            for label, v in results.items():
                t.add(kind, label, len(data) / 1e6, v["rows"], v["before"] / mib, v["peak"] / mib,
                      (v["peak"] - v["before"]) / mib, v["cpu"], "yes" if same else "NO")
                print(f"{kind:<7} {label:<18} peak {v['peak'] / mib:7.0f} MiB  (+{(v['peak'] - v['before']) / mib:.0f})"
                      f"  cpu {v['cpu']:.1f} s", flush=True)
    print()
    print(t.text())
    print(report.machine())
    if not args.no_doc:
        path = report.write_doc("upload-rss", "Memory of a CSV upload", "python bench/upload_rss.py", [t], WHY)
        print(f"wrote {path}")


WHY = """
The baseline decoded the whole file into one string, wrapped it in a StringIO (a second copy, 4 bytes per
character), and read every cell as a Python string (`dtype=str`: ~50-60 bytes per cell) before converting whole
columns; the peak held all of them at once. This tree validates the UTF-8 block by block without keeping the text,
reads the bytes with one C parser in chunks of 50,000 rows, checks and converts each chunk's text cells and drops
them, and keeps only numeric columns (8 bytes per value) until the end, where the whole-file checks (epoch unit by
the median, the counts and first bad value of each check, the row limit) run exactly as before: every message is
the one a single read gave (tests/test_app_uploads.py also runs every rejection with 1-, 3- and 7-row chunks).
"""

if __name__ == "__main__":
    main()
