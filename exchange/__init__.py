"""The local Binance-compatible exchange (WS + REST on loopback) behind ``--demo``, tests and benchmarks.

Self-contained: imports nothing of the project but `core` (standard-library facts such as duration strings). ``python -m exchange --help`` runs it standalone.
"""
