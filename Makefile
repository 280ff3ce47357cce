# The two commands: `make run` (the service on SQLite, with demo staff: gunicorn with the scheduler and
# SMS worker beside it, web/serve.py) and `make test` (the suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
VENDOR := web/static/vendor/.installed-stamp
PORT   ?= 5000
export PORT

.PHONY: run test install frontend chromium postgres lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# bpmn-js and dmn-js from the npm registry, copied next to the app's static files
$(VENDOR): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	rm -rf web/static/vendor && mkdir -p web/static/vendor/bpmn-js web/static/vendor/dmn-js
	cp -r node_modules/bpmn-js/dist/. web/static/vendor/bpmn-js/
	cp -r node_modules/dmn-js/dist/. web/static/vendor/dmn-js/
	touch $(VENDOR)

frontend: $(VENDOR)

# Debian's Chromium for the browser tests (Playwright drives it; no browser download)
chromium:
	@(command -v chromium >/dev/null 2>&1 && fc-list :lang=zh | grep -qi "noto.*cjk") || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null)

# PostgreSQL answers on 127.0.0.1:5432 when installed here; start it when it is down (best effort)
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || \
	  (command -v pg_ctlcluster >/dev/null 2>&1 && pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start) || \
	  echo "PostgreSQL is not available: the PostgreSQL tests will be skipped"

run: $(STAMP) $(VENDOR)
	$(BIN)/hospital-workflow setup --demo
	$(BIN)/hospital-workflow-serve --port $(PORT)

test: $(STAMP) $(VENDOR) chromium postgres
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check engine web tests bench

bench: $(STAMP)
	$(BIN)/python bench/engine_throughput.py

clean:
	rm -rf $(VENV) node_modules web/static/vendor var
