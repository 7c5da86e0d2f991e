"""Single definitions of the facts every room shares (see ../shared/DESIGN.md: one fact, one place).

- `timeframes`: bar lengths ("1s" … "1d") and the ones the app and alert rules offer;
- `durations`: duration strings such as "90s", "30m", "7d";
- `binance_csv`: column layouts of Binance public-data trade / aggTrade / kline CSVs;
- `symbols`: what a symbol looks like;
- `logs`: the one-line-per-event, UTC log format of the command-line tools;
- `paths`: the default tick-file paths (`TICKDESK_DB`, `data/ticks.duckdb`, `data/demo.duckdb`).
- `plausible`: what a real trade looks like (time 2009–2100 and not ahead of now, id range); every edge rejects
  the rest.

Standard library only and nothing of the project, so every room (quantlib, tickstore, feed, exchange, history,
alerts, dashboard, pages, the CLIs) may import it.
"""
