# The README's two commands are `make run` and `make test`; both set up .venv from scratch when needed.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?= --rate 20 --messages 400 --bad-every 50
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The model stack is pinned to Debian trixie's versions, which the images take from Debian with its Python 3.13;
# PyPI has no CPython 3.13 wheel of scikit-learn 1.4.2, so the dev venv takes the same versions as CPython 3.11
# wheels (3.11 is also what Azure ML's reference server runs on): find a 3.11 interpreter, or say what to do.
PYTHON311 ?= $(shell for p in python3.11 python3 python; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; \
	then command -v $$p; break; fi; done)

.PHONY: run test test-fast lint fuzz faults overload soak bench bench-budget model manifest model-layer clean venv image image-test edge mosquitto iotedgedev manifest-goldens lock image-push

venv: $(VENV)/.installed

$(VENV)/.installed: requirements/model.txt requirements/runtime.txt requirements/dev.txt
	@if [ -z "$(PYTHON311)" ]; then \
	  echo "error: Python 3.11 is needed (the pinned scikit-learn 1.4.2, Debian trixie's, has no PyPI wheel for 3.13) and none was found."; \
	  echo "  Debian/Ubuntu: sudo apt-get install python3.11 python3.11-venv"; \
	  echo "  pyenv:         pyenv install 3.11 && pyenv shell 3.11"; \
	  echo "  uv:            uv python install 3.11"; \
	  echo "  or point at one: make PYTHON311=/path/to/python3.11 $(MAKECMDGOALS)"; \
	  exit 1; fi
	@if ! $(PYTHON311) -c 'import venv, ensurepip' 2>/dev/null; then \
	  echo "error: $(PYTHON311) lacks venv/ensurepip; on Debian: sudo apt-get install python3.11-venv"; exit 1; fi
	$(PYTHON311) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	@touch $@

run: venv
	$(PY) -m app simulate $(ARGS)

LINTED := app edgekit tests bench deploy images localedge sensor examples

# Everything: lint, types, the in-process tests (tests/unit) and the broker/process tests (tests/integration).
test: venv mosquitto
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

# The in-process tests only (no brokers, no processes): seconds, for the edit-test loop.
test-fast: venv
	$(PY) -m pytest -q tests/unit

lint: venv
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

# The whole deployment on this machine, no Docker, no Azure (localedge/): sensor -> inference -> $upstream,
# predictions printed as they arrive; Ctrl-C stops everything. E.g. EDGE_ARGS="--verbose --env tempSensor:MessageDelay=1".
edge: venv mosquitto
	$(PY) -m localedge run $(EDGE_ARGS)

# The local edge and the tests run real Mosquitto brokers (Debian's package), started and stopped by them.
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { \
	  echo "installing mosquitto from Debian's packages"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends mosquitto; }

# bench.peers (~12 min; PEERS_ARGS="--quick" for one round): against azmlinfsrv and MLServer, whose virtualenvs
# (.venv-azmlinfsrv, .venv-mlserver) it builds on first use, and through the local edge; bench/results/peers.{md,png}.
bench: venv mosquitto
	$(PY) -m pip install --quiet -r requirements/bench.txt
	$(PY) -m bench
	$(PY) -m bench.journal
	$(PY) -m bench.engines
	$(PY) -m bench.peers $(PEERS_ARGS)

# CPU per input at 50/200 msg/s and saturation, capacity and p99 through the local edge, against the echo module
# (~5 minutes: nine local edges). E.g. BUDGET_ARGS="--rounds 1 --seconds 3" (~70 s), or "--profile /tmp/prof".
bench-budget: venv mosquitto
	$(PY) -m bench.budget $(BUDGET_ARGS)

# Reliability proofs (not run by CI in full; CI runs a fast slice of each inside `make test`).
# fuzz: >= 200,000 hostile inputs, zero crashes, zero accounting violations (tests/fuzz).
fuzz: venv
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-20000} $(PY) -m pytest -q -p no:randomly tests/fuzz

# faults: broker restarts and kills, module kills, SIGSTOP, edgeHub outage, through the local edge: a table by id.
faults: venv mosquitto
	$(PY) -m bench.faults $(FAULT_ARGS)

# overload: 3x capacity for 60 s: memory, shedding, recovery.
overload: venv mosquitto
	$(PY) -m bench.overload $(OVERLOAD_ARGS)

# soak: an hour at a steady rate (SOAK_ARGS="--minutes 5" for the short one): RSS, descriptors, the invariant.
soak: venv mosquitto
	$(PY) -m bench.soak $(SOAK_ARGS)

model: venv
	$(PY) -m app train

# config/deployment.<platform>.json from deployment.template.json, .env and module.json; e.g. MANIFEST_ARGS="--platform amd64".
manifest: venv
	$(PY) -m deploy $(MANIFEST_ARGS)

# A layered deployment that sets only the inference module's desired `model` (deploy/layer.py), and its metrics:
#   MODEL_URL='https://...?<sas>' make model-layer MODEL_NAME=temperature-anomaly MODEL_VERSION=2 MODEL_BUNDLE=m.tar.gz
# The SAS URL stays in the environment (MODEL_URL), out of the command line and make's echo.
model-layer: venv
	@$(PY) -m deploy --layered-model --name "$(MODEL_NAME)" --version "$(MODEL_VERSION)" \
		$(if $(MODEL_BUNDLE),--from-bundle "$(MODEL_BUNDLE)") $(if $(MODEL_SHA256),--sha256 "$(MODEL_SHA256)") \
		$(if $(MODEL_SIZE),--size "$(MODEL_SIZE)") $(if $(MODEL_OUT),--out "$(MODEL_OUT)") $(LAYER_ARGS)

# iotedgedev 3.3.7 (the reference for `make manifest`, tests/integration/test_manifest_reference.py) runs only on
# Python < 3.10: its own virtualenv. Without it the test compares against golden files recorded from it.
PYTHON39 ?= $(shell for p in python3.9 python3.8 $$HOME/.pyenv/versions/3.9*/bin/python; do command -v $$p >/dev/null 2>&1 && { command -v $$p; break; }; done)
.venv-iotedgedev/bin/iotedgedev:
	@[ -n "$(PYTHON39)" ] || { echo "iotedgedev 3.3.7 needs Python < 3.10 (e.g. pyenv install 3.9)"; exit 1; }
	$(PYTHON39) -m venv .venv-iotedgedev
	.venv-iotedgedev/bin/python -m pip install --quiet --upgrade pip
	.venv-iotedgedev/bin/python -m pip install --quiet iotedgedev==3.3.7
iotedgedev: .venv-iotedgedev/bin/iotedgedev

# Re-record tests/deploy/goldens from iotedgedev (after changing deployment.template.json, module.json, .env.example).
manifest-goldens: venv iotedgedev
	$(PY) -m tests.deploy.record

# The three images (amd64, arm64v8, arm32v7): docker buildx if a Docker engine is there, else podman with local
# mmdebstrap bases (see images/build.sh). image-test builds, then compares the two selftests.
image:
	images/build.sh

image-test:
	images/test.sh

# One multi-arch tag: the three images as <repo>:<version>-<platform>, and <repo>:<version> as their manifest list.
image-push:
	images/push.sh $(PUSH_ARGS)

# requirements/lock/: every pip file the images install, with its sha256 (images/lock.py; PyPI needed).
lock: venv
	$(PY) images/lock.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
