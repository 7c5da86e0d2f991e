# tickdesk — make run | make demo | make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SYMBOLS ?= btcusdt,ethusdt,solusdt,bnbusdt
MARKET ?= spot
PORT ?= 8501

.PHONY: run demo test venv bench clean

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# Live Binance: ingestor + app; Ctrl-C stops both.
run: venv
	@mkdir -p data
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/python ingestor.py --symbols $(SYMBOLS) --market $(MARKET) --db data/ticks.duckdb --history 30m & \
	TICKDESK_DB=data/ticks.duckdb $(BIN)/streamlit run streamlit_app.py --server.port $(PORT) & \
	wait

# Offline: local Binance-compatible exchange in-process, separate demo file.
demo: venv
	@mkdir -p data
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/python ingestor.py --demo --symbols $(SYMBOLS) --market $(MARKET) --db data/demo.duckdb & \
	TICKDESK_DB=data/demo.duckdb $(BIN)/streamlit run streamlit_app.py --server.port $(PORT) & \
	wait

test: venv
	$(BIN)/python -m pytest -q tests

# Each prints a table (figures in README). Long runs on their own: bench/app_rss.py --minutes 30,
# bench/faulted_run.py --minutes 5, bench/browser_memory.py.
bench: venv
	for b in analytics query ingest latency app; do $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
