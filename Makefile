# LatentMap: `make run` opens the app on the bundled sample project, `make test` runs every test.
# Both set up on first use: .venv with the pinned torch, and the Debian packages for Qt/GL/Xvfb.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLBACKEND ?= Agg
# UTF-8 for every text file and pipe, whatever locale a library switches the process to
export PYTHONUTF8 ?= 1

.PHONY: setup run test bench clean sample screenshots package

setup: $(STAMP)

$(STAMP): pyproject.toml packaging/setup.sh
	bash packaging/setup.sh "$(PYTHON)" "$(VENV)"
	touch $(STAMP)

# With no display, run under a virtual screen, save a screenshot and exit 0.
run: setup
	@if [ -n "$$DISPLAY" ] || [ -n "$$WAYLAND_DISPLAY" ]; then \
		$(VENV)/bin/latentmap app --sample; \
	else \
		mkdir -p out; \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(VENV)/bin/latentmap app --sample \
			--screenshot out/latentmap-sample.png --quit-after 20; \
	fi

test: setup
	$(PY) -m pytest -q -ra

bench: setup
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The README's screenshots (docs/images), regenerated on the sample project at 1600x1000.
screenshots: setup
	@if [ -n "$$DISPLAY" ]; then $(PY) packaging/screenshots.py; \
	else xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) packaging/screenshots.py; fi

# Build (or finish building) this user's sample project, as `make run` does on first use.
sample: setup
	$(PY) -c "from core.sample_project import build_sample_project; print(build_sample_project())"

# Self-contained Linux bundle (PyInstaller one-folder, CPU torch) wrapped as a .deb, then its
# smoke test (packaging/README.md). Separate from `make test`: CI does not run it. dist/*.deb
PACKAGE_TOOLS := $(VENV)/.package-tools
$(PACKAGE_TOOLS): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e ".[package]"
	touch $@

package: setup $(PACKAGE_TOOLS)
	nice -n 10 $(VENV)/bin/pyinstaller --noconfirm --log-level WARN --distpath dist \
		--workpath build/pyinstaller packaging/latentmap.spec
	nice -n 10 $(PY) packaging/strip_bundle.py dist/latentmap
	deb=$$(nice -n 10 bash packaging/build_deb.sh dist/latentmap dist) && \
		bash packaging/smoke_test.sh "$$deb" out/package

clean:
	rm -rf $(VENV) .cache out .pytest_cache build dist
