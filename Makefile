# ood-repro: `make reproduce` runs every experiment notebook (smoke profile by default), `make test` tests all.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# The CPU-capable torch build pinned for this project's CI machines; GPU users may override it, e.g.
# make install TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cu124"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
PROFILE ?= smoke
EXPERIMENTS := $(sort $(wildcard nbs/tab*_*.ipynb nbs/fig*_*.ipynb))

.PHONY: install system-deps test reproduce check-clean check-papermill bench clean
# Debian packages the tests read: WordNet 3.0 (NegLabel's word corpus, read by NLTK without a download), and the
# browser of the JupyterLab test with fonts for its screenshot (driven by Playwright; `playwright install` is never run).
DEBIAN_PACKAGES := wordnet-base chromium fonts-liberation
# One BLAS/OpenMP thread per process: tests run two notebooks (and papermill kernels) at once on two cores, where
# torch's spinning worker threads made a small extraction over ten times slower than with one thread.
TEST_ENV := HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1

install: system-deps $(STAMP)

# Installs the Debian packages that are missing, where apt-get exists and we may use it; otherwise says what to install.
system-deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			(apt-get install -y -q --no-install-recommends $$missing || \
			 (apt-get update -q && apt-get install -y -q --no-install-recommends $$missing)) >/dev/null; \
		else echo "Missing Debian packages: $$missing (install them, e.g. sudo apt-get install $$missing)"; fi; \
	fi

# Re-runs only when the packaging files change; creating the venv is skipped when it exists.
$(STAMP): setup.py settings.ini
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Notebooks are the source: exporting and cleaning must change nothing, and no committed notebook has outputs.
check-clean: install
	$(BIN)/python .ci/check_clean.py

# nbdev_test ignores papermill's parameters tag; this runs the README's command, overriding a parameter.
check-papermill: install
	@mkdir -p runs/papermill
	$(TEST_ENV) $(BIN)/papermill --log-level WARNING nbs/tab1_tagood.ipynb runs/papermill/tab1_tagood_tau.ipynb -p tau 0.5

# tests/ holds what cannot live in a notebook: the wheel in a fresh environment, JupyterLab in a browser, two processes.
test: install check-clean check-papermill
	cd nbs && $(TEST_ENV) ../$(BIN)/nbdev_test --n_workers 2 --timing
	@echo "notebooks: $$(ls nbs/*.ipynb | wc -l) passed, 0 failed"
	$(TEST_ENV) $(BIN)/python -m pytest -p no:cacheprovider -ra tests/

# Speed benchmarks print measured ratios against reference implementations; they fail only on wrong values.
bench: install
	$(BIN)/python bench/metrics.py

reproduce: install
	@mkdir -p runs/papermill
	@for notebook in $(EXPERIMENTS); do \
		echo "== $$notebook (profile $(PROFILE))"; \
		HF_HUB_OFFLINE=1 $(BIN)/papermill --log-level WARNING "$$notebook" "runs/papermill/$$(basename $$notebook)" \
			-p profile $(PROFILE) || exit 1; \
	done
	@echo "Written:"; find runs/$(PROFILE) figures -type f -newer $(STAMP) 2>/dev/null | sort | sed 's/^/  /'

clean:
	rm -rf runs .ood_repro _proc
