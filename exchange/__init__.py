"""The local Binance-compatible exchange (WS + REST on loopback) behind ``--demo``, tests and benchmarks.

Self-contained: imports nothing of the project. ``python -m exchange --help`` runs it standalone.
"""
