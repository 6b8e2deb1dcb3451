# Every target creates .venv on first use; torch is pinned to the local CPU build.
VENV := .venv
PYTHON := $(VENV)/bin/python
PIP_INSTALL := $(PYTHON) -m pip install --quiet --disable-pip-version-check -c constraints.txt
STAMP := $(VENV)/.installed
STAMP_ALL := $(VENV)/.installed-all
STAMP_DOCS := $(VENV)/.installed-docs
# Real renderers get a venv of their own: bpy pins NumPy < 2 and needs Python 3.11.
VENV_INTEGRATIONS := .venv-integrations
STAMP_INTEGRATIONS := $(VENV_INTEGRATIONS)/.installed
PIP_INTEGRATIONS := $(VENV_INTEGRATIONS)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: demo test test-all test-integrations bench gallery docs lint format wheel-smoke clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e ".[dev,plot,rl]"
	touch $(STAMP)

# The optional backends the slow tests exercise (Ray) and the benchmarks' extras.
$(STAMP_ALL): $(STAMP)
	$(PIP_INSTALL) -e ".[dev,plot,rl,ray,bench]"
	touch $(STAMP_ALL)

# MkDocs, Material and mkdocstrings for `make docs`.
$(STAMP_DOCS): $(STAMP)
	$(PIP_INSTALL) -e ".[docs]"
	touch $(STAMP_DOCS)

$(STAMP_INTEGRATIONS): pyproject.toml constraints.txt
	python3 -m venv $(VENV_INTEGRATIONS)
	$(PIP_INTEGRATIONS) torch==2.13.0
	$(PIP_INTEGRATIONS) -e ".[dev,plot,mitsuba,blender]"
	touch $(STAMP_INTEGRATIONS)

demo: $(STAMP)
	$(VENV)/bin/voidgrad demo

test: $(STAMP)
	$(PYTHON) -m pytest -q -m "not slow"

test-all: $(STAMP_ALL)
	$(PYTHON) -m pytest -q

# Mitsuba 3 and Blender render for real (Mitsuba's llvm variant also needs libllvm19).
test-integrations: $(STAMP_INTEGRATIONS)
	$(VENV_INTEGRATIONS)/bin/python -m pytest -q tests/integrations

bench: $(STAMP_ALL)
	$(PYTHON) benchmarks/estimator_overhead.py
	$(PYTHON) benchmarks/distribution_overhead.py

# The documentation site, into site/. Strict: any warning (a broken link or reference, a
# docstring griffe cannot parse) fails the build.
# Every example with small settings, its picture into build/gallery/ (the Mitsuba and Blender
# ones need .venv-integrations: make test-integrations first, or they are skipped; the docs
# extra brings scikit-learn for the discrete VAE).
gallery: $(STAMP_DOCS)
	OMP_NUM_THREADS=1 $(PYTHON) examples/gallery.py --out build/gallery

docs: $(STAMP_DOCS) gallery
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/mypy

# The wheel a user gets: built from the clone (stale setuptools output in build/ removed
# first: it would ship deleted modules), installed into a fresh venv with torch pinned as
# above, then imported, run and its console script called from that venv. The venv gets
# no pip of its own (.venv's installs into it: ensurepip costs ~15 s) and no bytecode
# (compiling torch's would triple the install time).
WHEEL_VENV := build/wheel-smoke
wheel-smoke: $(STAMP)
	rm -rf dist build/lib build/bdist.* $(WHEEL_VENV)
	$(PYTHON) -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir dist .
	python3 -m venv --without-pip $(WHEEL_VENV)
	$(PYTHON) -m pip --python $(WHEEL_VENV)/bin/python install --quiet \
		--disable-pip-version-check --no-compile -c constraints.txt dist/voidgrad-*.whl
	$(WHEEL_VENV)/bin/python .ci/wheel_smoke.py

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks examples
	$(VENV)/bin/ruff format src tests benchmarks examples

clean:
	rm -rf $(VENV) $(VENV_INTEGRATIONS) build dist site src/*.egg-info .pytest_cache .ruff_cache
