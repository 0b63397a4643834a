# virtdriver: every target installs what it needs on a fresh Debian machine by itself.
#   make test      lint, stale-sample check, unit, integration and Nova suites
#   make demo      the library's main job on the embedded simulators
#   make bench     benchmarks (figures quoted in README.md)
#   make genconfig regenerate etc/virtdriver.conf.sample
#   make lint      ruff

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
CACHE := .cache
APT_PACKAGES := golang-go golang-github-vmware-govmomi-dev
GOVMOMI_SRC := /usr/share/gocode/src/github.com/vmware/govmomi/simulator
SAMPLE := etc/virtdriver.conf.sample

.PHONY: test lint unit integration test-nova check-genconfig genconfig demo bench venv system-deps vcsim clean

test: lint check-genconfig unit integration test-nova

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,eventlet]'
	touch $@

# Debian's Go and govmomi sources, for the vcsim launcher the VMware tests run against.
system-deps: $(CACHE)/system-deps.stamp

$(CACHE)/system-deps.stamp:
	@mkdir -p $(CACHE)
	if ! command -v go >/dev/null || [ ! -d $(GOVMOMI_SRC) ]; then \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi
	command -v node >/dev/null || { SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm; }
	touch $@

# The launcher, built by the product's own code into ~/.cache/virtdriver (as 'sim start' does).
vcsim: system-deps venv
	$(PY) -m virtdriver.vmware.simulator build

lint: venv
	$(VENV)/bin/ruff check .

genconfig: venv
	$(VENV)/bin/oslo-config-generator --config-file etc/oslo-config-generator/virtdriver.conf

check-genconfig: venv
	@tmp=$$(mktemp) && \
	$(VENV)/bin/oslo-config-generator --config-file etc/oslo-config-generator/virtdriver.conf \
		--output-file $$tmp && \
	if ! diff -u $(SAMPLE) $$tmp; then rm -f $$tmp; \
		echo "$(SAMPLE) is stale: run 'make genconfig' and commit it"; exit 1; fi; \
	rm -f $$tmp

unit: venv
	$(PYTEST) -q -rs tests/unit

integration: venv vcsim
	# VCSIM_URL unset: every VMware test runs on our launcher, none is deselected
	env -u VCSIM_URL $(PYTEST) -q -rs tests/integration

# Nova's own driver tests in their own venv (.venv-nova): see tests/nova/run.sh.
test-nova: system-deps
	bash tests/nova/run.sh

demo: venv vcsim
	$(PY) tools/demo.py

bench: venv vcsim
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) $(CACHE) .pytest_cache .ruff_cache
