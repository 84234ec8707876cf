# `make run` trains the pipeline, `make test` runs the tests; both create .venv and
# install the pinned dependencies first (`make install` does only that), and skip that when
# it is already up to date. EXTRAS: the optional dependencies installed with them (a cloud
# machine's set-up: `make install EXTRAS=cloud`, the S3 and GCS DVC remotes).
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
RUNTIME := node_modules/.installed
PLOTS_PAGE := .dvc/plots-page.html
EXTRAS ?= test

.PHONY: install run test test-fast show bench review share compare explore sky cloud-sweep cloud-results
BASE ?= main

install: $(INSTALLED) $(RUNTIME) $(PLOTS_PAGE)

$(INSTALLED): pyproject.toml requirements.lock requirements-extras.lock
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -c requirements-extras.lock \
		-e '.[$(EXTRAS)]'
	touch $@

# the explorer's runtime for models other than the notes' MLP: onnxruntime-web from npm, as
# package-lock.json pins it, no install scripts run; without npm only those pages cannot be made
$(RUNTIME): package.json package-lock.json
	@command -v npm >/dev/null || { echo "warning: npm not found: the explorer of a model other than the MLP needs it" >&2; exit 0; }; \
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && touch $@

# DVC's plots page with vega, vega-lite and vega-embed inlined from node_modules (.dvc/config
# names it as plots.html_template): `dvc plots show` and `diff` draw with no network
$(PLOTS_PAGE): $(INSTALLED) $(RUNTIME) src/vaepipe/runs/plots_page.py
	PYTHONPATH=src $(BIN)/python -m vaepipe.runs.plots_page

run: install
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro

# the test files on WORKERS processes (pytest-xdist, a file's tests on one): most of an
# end-to-end test is single-threaded dvc, git and Python start-up, which two processes overlap
WORKERS ?= 2
test: install
	$(BIN)/ruff check src stages tests benchmarks experiments
	PATH="$(CURDIR)/$(BIN):$$PATH" pytest -n $(WORKERS) --dist loadfile --durations=15

# the edit-test loop: everything but the end-to-end tests (real dvc and git in temporary repositories)
test-fast: install
	$(BIN)/ruff check src stages tests benchmarks experiments
	PATH="$(CURDIR)/$(BIN):$$PATH" pytest -n $(WORKERS) --dist loadfile -m "not e2e" --durations=15

# the whole pipeline REPEATS times between runs of the notebook's recipe: one run's ratio
# moves by 10-20 % with a shared machine's speed
REPEATS ?= 3
bench: $(INSTALLED)
	PATH="$(CURDIR)/$(BIN):$$PATH" python benchmarks/train_speed.py
	PATH="$(CURDIR)/$(BIN):$$PATH" python benchmarks/pipeline.py --repeats $(REPEATS)
	PATH="$(CURDIR)/$(BIN):$$PATH" python benchmarks/folder.py
	PATH="$(CURDIR)/$(BIN):$$PATH" python benchmarks/checkpoint.py
	PATH="$(CURDIR)/$(BIN):$$PATH" python benchmarks/conv_speed.py --images 10000
	PATH="$(CURDIR)/$(BIN):$$PATH" python benchmarks/colour_scale.py  # CelebA's size: about an hour on 2 cores

# every experiment in 120 columns: its name, the params that differ, the headline metrics,
# each marked ≈ where it lies within the seeds' spread of the first commit's (vaepipe.runs.noise)
SHOWN ?= test.loss,test.recon,test.kl,test.iw_nll,samples.fd
show: $(INSTALLED)
	@PATH="$(CURDIR)/$(BIN):$$PATH" python -m vaepipe.runs.table --metrics "$(SHOWN)"

# a Markdown report of the workspace against $(BASE): review/report.md. BASE reaches the
# command as an environment variable, quoted, never pasted into the shell's text.
export BASE
review: $(INSTALLED)
	PATH="$(CURDIR)/$(BIN):$$PATH" python -m vaepipe.runs.review --out review -- "$$BASE"

# every run this machine made, to the default DVC remote: teammates' `dvc exp run --pull` restores it
share: $(INSTALLED)
	PATH="$(CURDIR)/$(BIN):$$PATH" python -m vaepipe.runs.share

# every experiment the repository knows on one static page, compare/ (vaepipe.compare.build):
# read from git and the DVC cache, nothing checked out or re-run
compare: $(INSTALLED)
	@PATH="$(CURDIR)/$(BIN):$$PATH" python -m vaepipe.compare.build --out compare

# the explorer of the workspace's run (`dvc repro explore` makes it), or FOLDER=compare, served on
# 127.0.0.1 only, to requests addressed to 127.0.0.1 or localhost (vaepipe.explorer.serve: no DNS rebinding)
PORT ?= 8000
FOLDER ?= explorer
export FOLDER
explore: $(INSTALLED)
	@test -f "$$FOLDER/index.html" || { echo "error: $$FOLDER/index.html not found: run \`dvc repro explore\` (or \`make compare\`) first" >&2; exit 1; }
	@echo "$$FOLDER: http://127.0.0.1:$(PORT)/ (Ctrl-C stops it)"
	@$(BIN)/python -m vaepipe.explorer.serve "$$FOLDER" --port "$(PORT)"

# SkyPilot, which launches runs on clouds, Kubernetes or Slurm (docs/cloud.md), in an
# environment of its own: it pins click below 8.2, DVC's needs 8.5
SKY_VENV := .venv-sky
$(SKY_VENV)/.installed: cloud/sky.lock
	test -x $(SKY_VENV)/bin/python || python3 -m venv $(SKY_VENV)
	$(SKY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r cloud/sky.lock
	touch $@
sky: $(SKY_VENV)/.installed

# one SkyPilot managed job (spot, recovered when preempted) a point of PARAMS' grid, e.g.
# `make cloud-sweep PARAMS='beta=0.5,1,2,4' SKY_ARGS='--gpus L4:1'`; each reaches the command
# as an environment variable, never pasted into the shell's text
export PARAMS SKY_ARGS
cloud-sweep: $(INSTALLED) $(SKY_VENV)/.installed
	SKY="$(CURDIR)/$(SKY_VENV)/bin/sky" $(BIN)/python -m vaepipe.runs.cloud "$$PARAMS" -- $$SKY_ARGS

# every experiment pushed from this commit, fetched with its outputs, shown as one table and
# on the comparison page (compare/)
GIT_REMOTE ?= origin
export GIT_REMOTE
cloud-results: $(INSTALLED)
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc exp pull "$$GIT_REMOTE"
	PATH="$(CURDIR)/$(BIN):$$PATH" python -m vaepipe.runs.table
	@PATH="$(CURDIR)/$(BIN):$$PATH" python -m vaepipe.compare.build --out compare
