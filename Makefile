# Two entry points (see README): `make demo` and `make test`. Both build .venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,bench]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Debian packages the test servers need (tests/servers/stac_api.py runs PostgreSQL 15 + PostGIS 3
# for stac-fastapi-pgstac). Checked with dpkg first, so this costs nothing once installed.
DEB_PACKAGES := postgresql-15 postgresql-15-postgis-3

.PHONY: install demo test lint bench bench-e2e mask-report methods-report system-deps
install: $(STAMP)

system-deps:
	@missing=""; \
	for pkg in $(DEB_PACKAGES); do \
		dpkg -s $$pkg 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" -ne 0 ]; then \
			echo "make: the test suite needs Debian packages:$$missing" >&2; \
			echo "make: install them as root: apt-get install -y --no-install-recommends$$missing" >&2; \
			exit 1; \
		fi; \
		echo "installing Debian packages:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: $(STAMP)
	$(BIN)/cloudfree demo --dir demo-output

test: system-deps $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/kernels.py
	$(BIN)/python benchmarks/composite.py --out docs/composite-benchmark.md
	$(BIN)/python benchmarks/end_to_end.py --out docs/end-to-end-benchmark.md

# cloudfree against odc-stac + xarray and the GDAL decode floor, 24 dates x 4096^2 over HTTP;
# the archive is generated once into benchmarks/.cache. Rewrites docs/end-to-end-benchmark.md.
bench-e2e: $(STAMP)
	$(BIN)/python benchmarks/end_to_end.py --out docs/end-to-end-benchmark.md

# Omission/commission and composite error of every cloud mask; rewrites docs/masks.md.
mask-report: $(STAMP)
	$(BIN)/python -m cloudfree.testing.mask_report --out docs/masks.md

# Error of every compositing method against the synthetic truth; rewrites docs/methods.md.
methods-report: $(STAMP)
	$(BIN)/python -m cloudfree.testing.method_report --out docs/methods.md
