# tickdesk — make run | make demo | make test
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SYMBOLS ?=
TOP ?=
MAJORS := btcusdt,ethusdt,solusdt,bnbusdt
RUN_SYMBOLS := $(or $(SYMBOLS),$(MAJORS))
# with TOP: the TOP most traded USDT symbols (plus SYMBOLS if given); without: SYMBOLS or the four majors
RUN_SELECT := $(if $(TOP),--top $(TOP) $(if $(SYMBOLS),--symbols $(SYMBOLS)),--symbols $(RUN_SYMBOLS))
MARKET ?= spot
# make demo streams both markets unless MARKET is given: spot against the perpetual (basis, funding) is in view
DEMO_MARKET := $(if $(filter command line environment environment override,$(origin MARKET)),$(MARKET),spot,usdm)
STREAMS ?=
PORT ?= 8501

.PHONY: run demo test test-fast venv bench clean

# Ctrl-C (or either process ending) stops both; the ingestor flushes its buffer on SIGTERM; make exits with the
# ingestor's code (2: a refused start, e.g. Binance unreachable or an unknown symbol).
TRAP_BOTH = trap 'kill -TERM $$ing $$app 2>/dev/null' INT TERM
STOP_BOTH = wait -n $$ing $$app; kill -TERM $$ing $$app 2>/dev/null; wait $$ing; rc=$$?; wait $$app; exit $$rc
# make run starts the app once the ingestor has passed its start checks (symbols known, exchange reachable, file
# usable); a refused start shows the ingestor's one error line and no app.
WAIT_READY = while [ ! -e "$$ready" ] && kill -0 $$ing 2>/dev/null; do sleep 0.2; done; \
	if [ ! -e "$$ready" ]; then wait $$ing; rc=$$?; exit $$(( rc ? rc : 1 )); fi

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# Live Binance: ingestor + app; Ctrl-C stops both. `make run SYMBOLS=btcusdt,ethusdt`, or a universe:
# `make run TOP=100 MARKET=spot,usdm` streams the 100 most traded USDT symbols (24 h quote volume, TRADING only)
# of each market in one ingestor, spread over several connections (STREAMS=N: --streams-per-connection, default
# 200); `make run TOP=50 SYMBOLS=pepeusdt` adds symbols to them.
run: venv
	@ready=$$(mktemp -u /tmp/tickdesk-ready.XXXXXX); \
	$(BIN)/python ingestor.py $(RUN_SELECT) --market $(MARKET) $(if $(STREAMS),--streams-per-connection $(STREAMS)) --db data/ticks.duckdb --history 30m --ready-file $$ready & ing=$$!; \
	$(TRAP_BOTH); $(WAIT_READY); \
	TICKDESK_DB=data/ticks.duckdb $(BIN)/streamlit run streamlit_app.py --server.port $(PORT) & app=$$!; \
	$(STOP_BOTH)

# Offline: local Binance-compatible exchange in-process, separate demo file; by default its simulated universe
# of 24 symbols (exchange/universe.py) on spot and usdm (perpetuals with mark prices and funding: the Basis page),
# or `make demo SYMBOLS=btcusdt,ethusdt`, `make demo TOP=8` (the universe's 8 most traded), `make demo MARKET=spot`.
demo: venv
	@mkdir -p data
	@$(BIN)/python ingestor.py --demo $(if $(TOP),--top $(TOP)) $(if $(SYMBOLS),--symbols $(SYMBOLS)) --market $(DEMO_MARKET) $(if $(STREAMS),--streams-per-connection $(STREAMS)) --db data/demo.duckdb & ing=$$!; \
	$(TRAP_BOTH); \
	TICKDESK_DB=data/demo.duckdb $(BIN)/streamlit run streamlit_app.py --server.port $(PORT) & app=$$!; \
	$(STOP_BOTH)

# `make test` is CI: every test. `make test-fast` skips @pytest.mark.slow (browser, real servers, fault suite,
# anything over ~5 s) for a quick loop. Extra pytest arguments: `make test-fast ARGS="-k tickstore"`.
# No pipes after pytest: its exit code is the target's, so 5 (nothing collected or everything deselected) fails.
# Whole files per worker, longest files first (the order tests/conftest.py gives; xdist's own reorder is off). Two
# workers for `make test` (its browsers and servers want a core each); four for `make test-fast`, whose tests wait
# on sockets, sleeps and subprocesses about half the time (2 cores ~50 % busy at two workers: 85 s vs 41-51 s).
# PYTHONDONTWRITEBYTECODE is cleared for the run: with it set, every worker and every CLI subprocess a test starts
# compiles the project's modules and pytest rewrites every test file afresh (~6 s per worker); the caches land in
# __pycache__/ folders, which git ignores.
ARGS ?=
PYTEST = PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q --dist loadfile --no-loadscope-reorder $(ARGS)

test: venv
	$(PYTEST) -n 2 tests

test-fast: venv
	$(PYTEST) -n 4 -m "not slow" tests

# Each prints a table (figures in README). Long runs on their own: bench/app_rss.py --minutes 30,
# bench/faulted_run.py --minutes 5, bench/browser_memory.py, bench/interaction.py (builds a 20M-tick file).
bench: venv
	for b in analytics query ingest latency app startup sweep; do $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
