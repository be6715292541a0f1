# LoaPhuong: `make run` brings the whole system up locally; `make test` runs every test in
# parallel; `make test-fast` all but the end-to-end ones (tests/e2e); `make test-postgres` the
# tests that touch the database on PostgreSQL; `make lint` checks the code (ruff, mypy:
# settings in pyproject.toml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# wheels of the agent distribution's dependencies, for its offline install test (agent/)
WHEELHOUSE := $(VENV)/wheelhouse

# pytest-xdist workers, measured on the 2-core machine (docs/test-timing.md): the whole suite waits
# more than it computes (real agents, real time, Chromium, a 2-minute 4G outage; about 330 s of
# CPU for 1,120 s of the tests' own time): on the Intel Xeon of 7 December 318-323 s with 4
# workers, 246-258 s with 6 (four runs, the browser tests no slower than a tenth), 237 s with 8
# (the waiting tests then slowed by up to 80 %). The fast tier mostly computes (ffmpeg,
# hypothesis, Flask), but its agent tests wait on real MQTT round trips and playback: on the
# Intel Xeon 50-56 s with 3 workers, 47-58 s with 4; on the AMD EPYC of 7 December 21:50 UTC
# 69-75 s with 3 (about 126 s of CPU), 72-83 s with 4 (about 148 s: a fourth process on two
# cores costs CPU of its own), so 3. test-postgres computes (its server is a process of its
# own): 173 s with 4 workers, 185 s with 6.
TEST_WORKERS ?= 6
PG_WORKERS ?= 4
# the browser tests drive Debian's chromium (make test-deps), never a downloaded one
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
FAST_WORKERS ?= 3

.PHONY: run test test-fast test-postgres lint deps test-deps wheelhouse venv bench bench-fanout \
	bench-pages bench-load bench-bridge bench-soak clean docs test-pi-install

run: deps $(STAMP)
	$(PY) scripts/run.py

# Python keeps the bytecode of what it compiles (__pycache__, ignored by git) even where the
# environment says otherwise (PYTHONDONTWRITEBYTECODE): without it every test process, and
# every agent or CLI process a test starts, compiles the project's modules and pytest rewrites
# each test module again, about 2 s of CPU per process (docs/test-timing.md).
TEST_ENV := PYTHONDONTWRITEBYTECODE=

test: test-deps $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

# The tests that write and read the database run again with every instance on PostgreSQL
# (tests/database.py): the server given as DATABASE_URL, else one that scripts/ci-postgres.sh
# starts for the run and stops after. tests/agent and tests/audio never touch the database;
# of tests/e2e, the ones whose subject is what the server stores (delivery, proof of play,
# failover, several processes, provisioning); the browser, node-side fault and network tests
# exercise the same queries through pages and agents and would double CI's time for little
# (README, Tests: On PostgreSQL). PG_TESTS="tests/server tests/schedules tests/e2e" runs all.
PG_E2E := postgres walking_skeleton resilience dispatcher_failover faults_server recurring_schedule \
	airplay_report proof_of_play several_web_processes bridge_workers provisioning \
	provisioning_token occurrence_changes programme_broadcast alerts node_revoke
PG_TESTS ?= tests/server tests/schedules $(foreach t,$(PG_E2E),tests/e2e/test_$(t).py)
test-postgres: test-deps $(STAMP)
	scripts/ci-postgres.sh sh -c 'LOA_TEST_DATABASE_URL="$$DATABASE_URL" $(TEST_ENV) \
		$(PY) -m pytest -n $(PG_WORKERS) --dist loadgroup $(PG_TESTS)'

test-fast: deps $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -n $(FAST_WORKERS) --dist loadgroup -m "not e2e" \
		--hypothesis-profile=fast

# fails on any finding; .ci/run runs it before the tests
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --no-warn-unused-configs bench

deps:
	@scripts/install-deps.sh

# system packages first (python3-venv may be among them), then the venv and the wheelhouse
test-deps:
	@WITH_CHROMIUM=1 WITH_POSTGRES=1 scripts/install-deps.sh
	@$(MAKE) --no-print-directory wheelhouse

wheelhouse: $(WHEELHOUSE)/.fetched

$(WHEELHOUSE)/.fetched: agent/pyproject.toml $(STAMP)
	$(PY) scripts/agent_wheelhouse.py --dest $(WHEELHOUSE)
	touch $@

venv: $(STAMP)

# hardware/install-pi.sh run to the end in a debootstrap Debian bookworm root (arm64 under
# qemu-user where binfmt_misc allows, amd64 otherwise), then its agent plays a signed command
# from a Mosquitto on this machine (hardware/README.md). Needs root; the first run debootstraps
# into .cache/pi-root (minutes), later runs copy that root.
test-pi-install: $(STAMP)
	@if [ "$$(id -u)" -eq 0 ]; then PYTHON="$(abspath $(PY))" hardware/test-install-root.sh; \
	else sudo PYTHON="$(abspath $(PY))" hardware/test-install-root.sh; fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

docs: $(STAMP)
	$(PY) scripts/gen_protocol_docs.py

bench: deps $(STAMP)
	$(PY) bench/run.py

# only the fan-out benchmark (docs/benchmarks.md): a whole system and 1,100 simulated nodes
bench-fanout: deps $(STAMP)
	$(PY) bench/fanout.py --write-docs

# only the web pages' benchmark (docs/benchmarks.md): 1,000 nodes, a year of play logs, render
# times of every page in the menu, the dashboard's poll and a first load's bytes (a few minutes)
bench-pages: $(STAMP)
	$(PY) bench/pages.py --write-docs

# a province on one machine (docs/benchmarks.md, "10,000 nodes on one machine"): about 15
# minutes; LOAD_NODES=1000 for a smaller run. As a province's server runs (docs/scaling.md):
# one bridge worker beside the dispatcher; LOAD_BRIDGE_WORKERS=0 for the dispatcher's alone
# running; LOAD_DATABASE_URL=postgresql://user@host:port/db runs it on a new database of its own on
# that PostgreSQL server (db is only connected to; its part of docs/benchmarks.md is its own)
LOAD_NODES ?= 10000
LOAD_BRIDGE_WORKERS ?= 1
LOAD_DATABASE_URL ?=
bench-load: deps $(STAMP)
	$(PY) bench/load.py --nodes $(LOAD_NODES) --bridge-workers $(LOAD_BRIDGE_WORKERS) \
		$(if $(LOAD_DATABASE_URL),--database-url $(LOAD_DATABASE_URL)) --write-docs

# the bridge's ingest in-process (docs/benchmarks.md): 10,000 nodes on SQLite, an emergency's
# and a slot's events and a round of telemetry through Bridge.handle_batch (a few minutes)
bench-bridge: $(STAMP)
	$(PY) bench/bridge_ingest.py --write-docs
# a soak (docs/benchmarks.md, "A soak"): 1,000 nodes for 30 minutes with links dropping at
# random, the servers' memory and open files and every planned slot in the airplay report;
# about 33 minutes. SOAK_NODES, SOAK_MINUTES for another size
SOAK_NODES ?= 1000
SOAK_MINUTES ?= 30
bench-soak: deps $(STAMP)
	$(PY) bench/soak.py --nodes $(SOAK_NODES) --minutes $(SOAK_MINUTES) --write-docs

clean:
	rm -rf $(VENV) var instance .pytest_cache
