# dp-sandbox: one obvious way to run things.
#   make demo   the whole system on this machine (gateway + console + JupyterHub sandboxes)
#   make test   every test (lint, types, unit, api, integration incl. PostgreSQL, e2e, browser)
#   make bench  the benchmark table recorded in README.md

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYS_STAMP := /var/lib/dpsandbox-system-packages.stamp
SANDBOX_ENV ?= /opt/dpsandbox/sandbox-env
export DPSANDBOX_SANDBOX_ENV := $(SANDBOX_ENV)
# A Java runtime for pyspark (4.x runs on 17 or 21): Debian 12 has openjdk-17, Debian 13 only
# openjdk-21. The first that apt has a candidate version of is installed: `apt-cache show`
# succeeds, with no record, for a name another package merely mentions (openjdk-21 on 12).
JRE_PACKAGES := openjdk-17-jre-headless openjdk-21-jre-headless default-jre-headless
APT_CACHE ?= apt-cache
PICK_JRE = jre=""; for p in $(JRE_PACKAGES); do \
  if LC_ALL=C $(APT_CACHE) policy "$$p" 2>/dev/null | grep -q '^ *Candidate: [^(]'; then \
  jre=$$p; break; fi; done; \
  [ -n "$$jre" ] || { echo "no Java runtime package among: $(JRE_PACKAGES)" >&2; exit 1; }

.PHONY: demo test bench install system-packages jre-package sandbox-env docker-engine sandbox-image lint clean i18n

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock | $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

$(VENV):
	$(PYTHON) -m venv $(VENV)

# System packages a fresh Debian machine lacks (we run as root; skipped when present).
system-packages:
	@missing=""; need_java=""; \
	command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v nft >/dev/null 2>&1 || missing="$$missing nftables"; \
	/sbin/ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing="$$missing libseccomp2"; \
	[ -x /usr/bin/python3 ] || missing="$$missing python3"; \
	/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v useradd >/dev/null 2>&1 || missing="$$missing passwd"; \
	[ -n "$$(fc-list :lang=zh 2>/dev/null)" ] || missing="$$missing fonts-noto-cjk"; \
	command -v dockerd >/dev/null 2>&1 || missing="$$missing docker.io"; \
	command -v mmdebstrap >/dev/null 2>&1 || command -v debootstrap >/dev/null 2>&1 || missing="$$missing mmdebstrap"; \
	command -v mkfs.ext4 >/dev/null 2>&1 || missing="$$missing e2fsprogs"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v java >/dev/null 2>&1 || need_java=1; \
	if [ -n "$$missing$$need_java" ]; then \
	  apt-get update -qq || exit 1; \
	  if [ -n "$$need_java" ]; then $(PICK_JRE); missing="$$missing $$jre"; fi; \
	  echo "installing system packages:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The Java runtime package system-packages would install here (asks apt-cache only).
jre-package:
	@$(PICK_JRE); echo "$$jre"

sandbox-env: install system-packages
	$(BIN)/python -m sandbox.hub.build_env --prefix $(SANDBOX_ENV)

# Docker isolation (the default as root): start dockerd when it is not running, and build
# the sandbox image from Debian packages and wheels when its inputs changed (no registry).
docker-engine: system-packages
	@sh sandbox/image/start-dockerd.sh

sandbox-image: install docker-engine
	@if docker version >/dev/null 2>&1; then $(BIN)/dpsandbox image build; \
	else echo "no Docker engine: sandboxes use bubblewrap"; fi

demo: install system-packages sandbox-env sandbox-image
	$(BIN)/dpsandbox demo

# Schemathesis runs on its own: under xdist its per-operation tests collapse into one each.
test: install system-packages sandbox-env sandbox-image
	$(BIN)/pytest -n 2 --dist loadfile tests --ignore tests/api/test_schemathesis.py
	$(BIN)/pytest tests/api/test_schemathesis.py

bench: install system-packages sandbox-env sandbox-image
	$(BIN)/python bench/run.py
	$(BIN)/python bench/zcdp.py
	$(BIN)/python bench/replicas.py
	$(BIN)/python bench/synth.py
	$(BIN)/python bench/audit_page.py --entries 100000
	$(BIN)/python bench/spark.py
	$(BIN)/python bench/hub.py
	$(BIN)/python bench/hub_docker.py

# Translations (docs/i18n.md): re-extract marked strings, merge them into the .po catalogs,
# compile the .mo files (committed). Translate the new empty msgstr entries, then run again.
i18n: install
	$(BIN)/python -m gateway.i18n_catalogs update
	$(BIN)/python -m gateway.i18n_catalogs check || true

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
