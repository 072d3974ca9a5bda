# ood-repro: `make reproduce` runs every experiment notebook (smoke profile by default), `make test` tests all,
# `make lab` opens the notebooks in JupyterLab.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# The torch build pinned for this project's CI machines: PyPI's Linux wheel, built for CUDA 13.0 (its NVIDIA
# libraries are most of .venv's 6.6 GB), which runs on a CPU too. Another build for an older CUDA driver or a
# CPU-only one (README, "The install"), e.g.
# make install TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cu126"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
PROFILE ?= smoke
# `make bench` runs every benchmark at its full size; `make bench BENCH=quick` (what .ci/run does) at sizes that
# keep CI short. The quick sizes still check every value the scripts check; their timings are only indicative.
BENCH ?= full
ifeq ($(BENCH),quick)
BENCH_metrics := --n 200000 --repeats 1
# MDS and RMDS are left out of the quick run: pytorch-ood's reference needs every one of the 1000 classes in the bank
# and loops over them in Python (minutes); their values are checked in nbs/09_distance_baselines.
BENCH_baselines := --scale 0.02 --bank 50000 --repeats 1 --methods msp maxlogit energy gen gradnorm odin react ash_p ash_b ash_s scale dice knn vim mcm
BENCH_tagood := --n-train 128 --n-project 128 --n-images 12 --repeats 1
BENCH_neglabel := --images 10000 --finetune-features 10000 --repeats 1
BENCH_skipgrad := --steps 5 --repeats 2
BENCH_cache := --gib 0.25 --repeats 1
BENCH_negative_labels := --images 10000 --repeats 1
BENCH_scale := --n 8192 --ram-n 256
BENCH_gpu := --warmup 1 --iterations 1 --generation-iterations 1
BENCH_table_from_cache := --bank-fraction 0.01 --query-fraction 0.05
else ifeq ($(BENCH),full)
# the FLOPs of one real-size SD2 guidance pass, skip vs full (about a minute); the measured real-size runs are opt-in
BENCH_skipgrad := --flops-size 512
else
$(error BENCH must be full or quick, not $(BENCH))
endif

.PHONY: install system-deps lab test test-slow reproduce rehearse check-clean check-papermill bench toy-world toy-world-figure toy-claims clean
# Debian packages the tests read: WordNet 3.0 (the database NegLabel's word corpus is derived from when the release's lists are not configured; read from its data files), and the
# browser of the JupyterLab test with fonts for its screenshot (driven by Playwright; `playwright install` is never run).
DEBIAN_PACKAGES := wordnet-base chromium fonts-liberation
# One BLAS/OpenMP thread per process: tests run two notebooks (and papermill kernels) at once on two cores, where
# torch's spinning worker threads made a small extraction over ten times slower than with one thread.
TEST_ENV := HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1

install: system-deps $(STAMP)

# JupyterLab on the notebooks. Jupyter refuses to start as root without --allow-root (containers, GPU boxes), so
# the flag is added for root only. Kernels get CurveZMQ-encrypted channels: without keys ipykernel warns at every
# start (see kernel_config in nbs/00_config). `make lab LAB_ARGS="--no-browser --port 8889"` adds options;
# tests/test_jupyterlab.py starts the server with this recipe.
LAB_DIR ?= nbs
LAB_ARGS ?=
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: install
	$(BIN)/jupyter lab --ServerApp.root_dir=$(LAB_DIR) $(LAB_ROOT) --KernelManager.transport_encryption=auto $(LAB_ARGS)

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
# The notebooks run as nbdev_test runs them (nbdev's test_nb, two at a time), one line as each finishes.
test: install check-clean check-papermill
	$(TEST_ENV) $(BIN)/python .ci/test_notebooks.py --n_workers 2
	$(TEST_ENV) $(BIN)/python -m pytest -p no:cacheprovider -ra tests/

# The cells flagged `slow` that nbdev_test skips (real architectures, SIGKILL during generation, two-process generation).
test-slow: install
	$(TEST_ENV) $(BIN)/python .ci/test_notebooks.py --flags slow --n_workers 2

# Speed benchmarks print measured ratios against reference implementations; they fail only on wrong values.
bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python bench/metrics.py $(BENCH_metrics)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/baselines.py $(BENCH_baselines)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/tagood.py $(BENCH_tagood)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/neglabel.py $(BENCH_neglabel)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/skipgrad.py $(BENCH_skipgrad)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/cache.py $(BENCH_cache)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/negative_labels.py $(BENCH_negative_labels)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/scale.py $(BENCH_scale)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/table_from_cache.py $(BENCH_table_from_cache)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/gpu.py $(BENCH_gpu)

# Draws the toy world (nbs/02b) and trains its models from scratch into ood_repro/resources/toyworld/ with a manifest,
# in two processes of one thread each (a thread per core; each adds its models to the manifest under a lock), balanced
# by the shipped run's wall times (the manifest's `wall_s`): the three classifiers (nbs/02c, 26 minutes), then the
# RAM-shaped tagger (nbs/02d, 26); beside them the three CLIP models (nbs/02e, 18), then the two diffusion pipelines
# (nbs/02f, 44). About an hour on this project's 2-core machine: 62 minutes by those times.
TOY_WORLD_CLASSIFIERS_AND_TAGGER := from ood_repro.toytrain import train_toy_world; train_toy_world(); \
	from ood_repro.toytagger import train_toy_tagger; train_toy_tagger()
TOY_WORLD_CLIPS_AND_DIFFUSION := from ood_repro.toyclip import train_toy_clips; train_toy_clips(); \
	from ood_repro.toydiffusion import train_toy_diffusion; train_toy_diffusion()
toy-world: install
	@mkdir -p runs/toy-world
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -c '$(TOY_WORLD_CLASSIFIERS_AND_TAGGER)' > runs/toy-world/classifiers-and-tagger.log 2>&1 & first=$$!; \
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -c '$(TOY_WORLD_CLIPS_AND_DIFFUSION)' > runs/toy-world/clips-and-diffusion.log 2>&1; second=$$?; \
	wait $$first; first=$$?; tail -n 5 runs/toy-world/*.log; \
	if [ $$first != 0 ] || [ $$second != 0 ]; then echo "make toy-world failed: see runs/toy-world/*.log"; exit 1; fi

# README.md's picture of the toy world: the first images of every split (nbs/02b, `plot_world`).
toy-world-figure: install
	MPLBACKEND=Agg $(BIN)/python -c "from ood_repro.toyworld import plot_world; plot_world().savefig('figures/toy_world.png', dpi=90)"

# Every experiment notebook in nbs/ (found by the CLI, so new ones need no edit here), a summary, then every file written.
reproduce: install
	@mkdir -p runs && touch runs/.reproduce-started
	@HF_HUB_OFFLINE=1 $(BIN)/ood-repro run --all --profile $(PROFILE); status=$$?; \
	echo "Written:"; find runs/$(PROFILE) runs/papermill figures -type f -newer runs/.reproduce-started 2>/dev/null \
		| sort | sed 's/^/  /'; exit $$status

# The paper profile's dress rehearsal (README, "Rehearsing the paper profile"): `ood-repro rehearse` prepares
# REHEARSAL_DIR once (every dataset in its real layout with generated images, random-weight checkpoints of every
# model at its real architecture: about 17 GB) and runs every experiment notebook with the paper profile against it,
# subsampled as ood_repro.rehearsal says; bench/README.md ("The rehearsal") has its time on this project's 2-core machine.
REHEARSAL_DIR ?= runs/rehearsal
rehearse: install
	HF_HUB_OFFLINE=1 $(BIN)/ood-repro rehearse $(REHEARSAL_DIR)

# The papers' comparisons (TagOOD against a baseline, SynOOD against NegLabel, each component against the table row
# without it) in the paper and in a finished run of PROFILE, as README.md's table of the toy world shows them.
toy-claims: install
	@HF_HUB_OFFLINE=1 $(BIN)/python -c "from ood_repro.report import claims_markdown; print(claims_markdown('$(PROFILE)'))"

clean:
	rm -rf runs .ood_repro _proc
