# The two commands of the README: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_PACKAGES := wkhtmltopdf
# Postfix and Dovecot's LMTP: the MTA the tests put in front of and behind mailflow (each test
# module runs its own instance on 127.0.0.1; no system-wide mail server is set up or used).
SYSTEM_PACKAGES := $(RUN_PACKAGES) dovecot-imapd dovecot-lmtpd postfix poppler-utils swaks chromium

.PHONY: run test install run-packages system-packages lint bench clean fuzz chaos

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install run-packages
	$(BIN)/mailflow init
	$(BIN)/mailflow serve

# As root (a fresh machine), install what `mailflow serve` needs: wkhtmltopdf for the reports.
run-packages:
	@$(MAKE) --no-print-directory system-packages SYSTEM_PACKAGES="$(RUN_PACKAGES)"

# As root (CI, a fresh machine), install the system packages the tests drive for real. Postfix
# is installed unconfigured ("No configuration"): Debian then starts no daemon on port 25.
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing system packages (install as root):$$missing"; fi; \
	fi

# ruff, then the import contracts of pyproject.toml ([tool.importlinter]; docs/architecture.md)
lint: install
	$(BIN)/ruff check mailflow tests benchmarks
	$(BIN)/lint-imports --no-cache

test: install system-packages
	$(BIN)/ruff check mailflow tests benchmarks
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# Minutes of fuzzing (the seconds-long part is in `make test`): every parse/ target under Atheris,
# then the Hypothesis fuzz tests of parse/ and of the API with FUZZ_SCALE times their examples,
# randomized. Crashes land in build/fuzz/crashes/ (see tests/fuzz/long_run.py).
FUZZ_RUNS ?= 20000
FUZZ_SCALE ?= 40
fuzz: install
	$(BIN)/python -m tests.fuzz.long_run --runs $(FUZZ_RUNS)
	MAILFLOW_FUZZ=long MAILFLOW_FUZZ_SCALE=$(FUZZ_SCALE) $(BIN)/python -m pytest -q -p no:randomly \
	  --hypothesis-show-statistics tests/fuzz/test_parse_fuzz.py tests/fuzz/test_api_fuzz.py

# Chaos (issue #13): CHAOS_CASES cases over SMTP to two nodes on one PostgreSQL database while
# workers, schedulers, smtpds and the bus are killed with SIGKILL and restarted; prints a
# summary table and fails on any lost, doubled or unfinished message. `make test` runs 60
# (tests/chaos/test_chaos.py). Needs MAILFLOW_TEST_POSTGRES_URL; CHAOS_SEED repeats a run.
CHAOS_CASES ?= 500
CHAOS_SEED ?=
chaos: install
	$(BIN)/python -m tests.chaos.run --cases $(CHAOS_CASES) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
