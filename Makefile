# Two commands: `make run` starts everything, `make test` runs the whole test suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
WEB_PORT ?= 8000
FLOWER_PORT ?= 5555
export WEB_PORT FLOWER_PORT
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test install lint format bench smoke clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

.env:
	$(PYTHON) scripts/init_env.py

## run: install, migrate, load demo data, then start web, worker, beat and Flower (Ctrl-C stops all)
run: install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py setup_periodic_tasks
	$(PY) manage.py load_demo
	@echo ""
	@echo "API docs:  http://127.0.0.1:$(WEB_PORT)/api/docs/"
	@echo "Admin:     http://127.0.0.1:$(WEB_PORT)/admin/   (demo staff user above)"
	@echo "Flower:    http://127.0.0.1:$(FLOWER_PORT)/   (FLOWER_BASIC_AUTH in .env: $$(grep ^FLOWER_BASIC_AUTH .env | cut -d= -f2))"
	@echo "Health:    http://127.0.0.1:$(WEB_PORT)/readyz"
	@echo ""
	$(VENV)/bin/honcho start

## test: the whole suite against PostgreSQL, RabbitMQ and Redis on localhost
test: install
	$(PY) -m pytest

## smoke: with `make run` going, send a task through the broker and wait for its effect
smoke: install
	$(PY) manage.py celery_roundtrip

## lint: ruff, and the import contracts in pyproject.toml (which app may import which)
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-logo --cache-dir var/import_linter_cache

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: install
	$(PY) bench/celery_baseline.py

clean:
	rm -rf $(VENV) var staticfiles
