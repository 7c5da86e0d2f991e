"""The local exchange in its own process, driven over a pipe, so that it does not share the GIL with what is measured.

    with ExchangeProcess(SYMBOLS, rate=0) as ex:
        ex.ws_url, ex.http_url
        ex.blast(500_000)            # -> dict of exchange.server.BlastResult fields, once every frame is written
        ex.call("set_rate", 500.0)   # any LocalExchange method taking plain arguments

Not a benchmark itself.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _serve(symbols: list[str], kwargs: dict) -> None:
    """Child side: one JSON command per stdin line, one JSON answer per stdout line."""
    sys.path.insert(0, str(ROOT))
    from exchange.server import LocalExchange

    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the answer channel
    ex = LocalExchange(symbols, **kwargs).start()
    out.write(json.dumps({"ws_url": ex.ws_url, "http_url": ex.http_url}) + "\n")
    out.flush()
    try:
        for line in sys.stdin:
            cmd, args = json.loads(line)
            if cmd == "stop":
                break
            try:
                res = ex.blast(*args).result() if cmd == "blast" else getattr(ex, cmd)(*args)
                if dataclasses.is_dataclass(res):
                    res = dataclasses.asdict(res)
                answer = ["ok", res]
            except Exception as exc:  # report to the driving process
                answer = ["error", repr(exc)]
            out.write(json.dumps(answer, default=str) + "\n")
            out.flush()
    finally:
        ex.stop()


class ExchangeProcess:
    """`exchange.server.LocalExchange` in a child process (loopback only), driven over its stdin/stdout."""

    def __init__(self, symbols: list[str], **kwargs) -> None:
        self.symbols = list(symbols) if symbols is not None else None  # None: universe=N among the kwargs
        self.kwargs = {"markets": ["spot"], "seed": 7, **kwargs}
        self.proc: subprocess.Popen | None = None
        self.ws_url = self.http_url = ""

    def start(self) -> "ExchangeProcess":
        self.proc = subprocess.Popen([sys.executable, __file__, json.dumps([self.symbols, self.kwargs])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("local exchange process exited before listening (see its stderr above)")
        urls = json.loads(line)
        self.ws_url, self.http_url = urls["ws_url"], urls["http_url"]
        return self

    def call(self, method: str, *args):
        self.proc.stdin.write(json.dumps([method, list(args)]) + "\n")
        self.proc.stdin.flush()
        status, out = json.loads(self.proc.stdout.readline())
        if status != "ok":
            raise RuntimeError(f"exchange {method}{args}: {out}")
        return out

    def blast(self, n: int, market: str = "spot") -> dict:
        return self.call("blast", n, market)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.write(json.dumps(["stop", []]) + "\n")
            self.proc.stdin.close()
            self.proc.wait(20)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "ExchangeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    if len(sys.argv) != 2:  # e.g. `make bench` running every bench/*.py: a helper, nothing to measure
        print("bench/exchange_proc.py: helper of the benchmarks (runs the local exchange for them); nothing to run")
        sys.exit(0)
    _symbols, _kwargs = json.loads(sys.argv[1])
    _serve(_symbols, _kwargs)
