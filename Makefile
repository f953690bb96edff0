# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv if missing.
#
# torch comes from PyPI (on this project's CI machines pip takes the wheel cached on local disk).
# A Jetson that only serves installs the core package alone (pip install .), or uses JetPack's
# system torch/TensorRT/OpenCV through a --system-site-packages venv (see deploy/).

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
# The peer comparison's own venv (anomalib 2.7 + the product), kept apart so it cannot disturb .venv.
PEERS_VENV ?= .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test test-fast lint bars peers clean-venv help sysdeps-mqtt sysdeps-browser

help:
	@echo "make demo   - set up .venv and run the end-to-end demo (synthetic cable product); then"
	@echo "              'inspector demo --station' keeps the line and the operator station running"
	@echo "make test   - set up .venv and run the test suite (real-data tests skip without ../shared)"
	@echo "make lint   - ruff"
	@echo "make bars   - the slow real-data quality bars (bottle, minutes of CPU)"
	@echo "make peers  - set up .venv-peers (anomalib 2.7) for benchmarks/peers.py, the same-backbone peers"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[train,onnx,metrics,bridge,station,dev]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/inspector demo

# The MQTT bridge tests start a real Mosquitto broker. As root with apt-get (CI) it is installed when missing;
# otherwise those tests skip and say why.
sysdeps-mqtt:
	@if [ ! -x /usr/sbin/mosquitto ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mosquitto \
	    || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mosquitto); \
	  else echo "mosquitto missing (not root with apt-get): the MQTT bridge tests will skip"; fi; \
	fi

# The station's browser tests drive Debian's chromium with its chromedriver. Installed here when missing and we
# are root with apt-get (as on CI); otherwise those tests skip and say why.
sysdeps-browser:
	@if [ ! -x /usr/bin/chromedriver ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver for the station's browser tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver \
		|| { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		chromium chromium-driver; } || echo "could not install chromium; the browser tests will skip"; \
	fi

test: $(STAMP) sysdeps-mqtt sysdeps-browser
	$(BIN)/ruff check inspector tests benchmarks
	$(BIN)/python -m pytest -q -m "not bars" --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not bars"

bars: $(STAMP)
	$(BIN)/python -m pytest -q -m bars -s

# Not a dependency of test: anomalib and its stack are large, and CI stays fast without them.
$(PEERS_STAMP): pyproject.toml
	@test -x $(PEERS_VENV)/bin/python || $(PY) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet -e ".[train,peers]"
	@touch $@

peers: $(PEERS_STAMP)
	@echo "run: $(PEERS_VENV)/bin/python benchmarks/peers.py --data DIR --model patchcore|padim (see docs/benchmarks.md)"

lint: $(STAMP)
	$(BIN)/ruff check inspector tests benchmarks

clean-venv:
	rm -rf $(VENV) $(PEERS_VENV)
