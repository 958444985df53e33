# Two commands: `make run` starts everything, `make test` runs the whole test suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Every target but `test` runs its commands in the configuration of `make run`: the
# environment, with .env filling in what it leaves unset (scripts/dotenv.py, the settings'
# own rule). So `make smoke` in a second shell sees the services `make run` uses when they
# are in .env, or given to both. `make test` reads TEST_* only (config/settings/test.py).
WITH_ENV := $(PY) scripts/dotenv.py
SMOKE_TIMEOUT ?= 30
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
## (honcho gets the merged environment and no .env: reading .env itself, it would let .env win)
run: install .env
	$(WITH_ENV) $(PY) manage.py migrate --noinput
	$(WITH_ENV) $(PY) manage.py collectstatic --noinput -v 0
	$(WITH_ENV) $(PY) manage.py setup_periodic_tasks
	$(WITH_ENV) $(PY) manage.py load_demo
	@echo ""
	@$(WITH_ENV) $(PY) manage.py show_config --urls
	$(WITH_ENV) $(VENV)/bin/honcho start --env /dev/null

## test: the whole suite against PostgreSQL, RabbitMQ and Redis on localhost (TEST_* variables only)
test: install
	$(PY) -m pytest --ds=config.settings.test --durations=20

## smoke: with `make run` going, send a task through the broker and wait for its effect
## (prints the broker and database it uses)
smoke: install
	$(WITH_ENV) $(PY) manage.py celery_roundtrip --timeout $(SMOKE_TIMEOUT)

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
