"""quantlib: pure analytics for pairs trading (arrays / pandas in, numbers / frames / frozen results out).

Modules: `timeframes`, `bars` (ticks → OHLCV), `indicators`, `regression` (hedge ratios), `stattests`
(ADF, Engle-Granger, Johansen, half-life, Hurst), `pairs` (spread, correlations, `pair_summary`),
`backtest` (z-score mean reversion) and `screen` (the batched pair screen). No I/O here: see
quantlib/README.md for methods and conventions.
"""
