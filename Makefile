# The user's verbs. Each target installs what it needs into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CONFIG ?= configs/default.toml
RUN ?= runs/default
# The STS Benchmark dev split, used by eval and bench when it sits beside the project (never required).
SHARED_STS := $(wildcard ../shared/data/stsb-dev.tsv)
# Passages for the retrieval-over-passages task (eval.cloze), likewise never required.
SHARED_PASSAGES := $(wildcard ../shared/data/passages.txt)
QUALITY_RUN ?= runs/quality
MODEL ?= $(RUN)/export/transformer

.PHONY: help install distill quality collection eval export bench loadtest docs test lint format clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[distill,serve,bench,dev]'
	touch $@

install: $(INSTALLED) ## Create .venv and install the toolkit (done by every target that needs it)

distill: $(INSTALLED) ## Distill the default teacher into the students of configs/default.toml (runs/default)
	$(BIN)/distill run --config $(CONFIG)

quality: $(INSTALLED) ## Distill with the quality recipe (configs/quality.toml: hours on a CPU, minutes on a GPU) into runs/quality
	$(BIN)/distill run --config configs/quality.toml

collection: $(INSTALLED) ## Distill students for your own collection of documents (CORPUS=PATH: a BEIR folder, a .jsonl/.parquet with title and text; configs/collection.toml) into runs/collection, and score retrieval on its held-out passages
	$(if $(CORPUS),,$(error give your collection: make collection CORPUS=path/to/corpus.jsonl))
	$(BIN)/distill run --config configs/collection.toml --corpus $(CORPUS)

eval: $(INSTALLED) ## Compare teacher, students and the model2vec peer on tasks, fidelity and speed (after make distill; TASKS=SPEC, MTEB=TASK,...: yours too): runs/default/report.md + plots
	$(BIN)/distill eval --run $(RUN) --tasks default $(if $(SHARED_STS),--sts $(SHARED_STS) --tasks sts:$(SHARED_STS)) \
		$(if $(SHARED_PASSAGES),--tasks passages:$(SHARED_PASSAGES)) \
		$(if $(TASKS),--tasks $(TASKS)) $(if $(MTEB),--mteb $(MTEB))

export: $(INSTALLED) ## Export every student of runs/default to ONNX fp32 + int8, parity-checked, into its export/
	$(BIN)/distill export --run $(RUN)

bench: $(INSTALLED) ## Measure runs/default (and runs/quality, once made) now: tasks, fidelity, speed (GROW=1: also train on ../shared text; SCALE=1: also how extraction scales)
	for run in $(RUN) $(wildcard $(QUALITY_RUN)); do \
		$(BIN)/python -m eval.experiments.bench --run $$run $(if $(SHARED_STS),--sts $(SHARED_STS)) --tasks default \
			$(if $(SHARED_STS),--tasks sts:$(SHARED_STS)) $(if $(SHARED_PASSAGES),--tasks passages:$(SHARED_PASSAGES)) \
			$(if $(wildcard ../shared/data/corpus-reviews-speeches.txt),--other-text ../shared/data/corpus-reviews-speeches.txt) \
			$(if $(GROW),--grow-on ../shared/data/corpus-reviews-speeches.txt) || exit 1; \
	done
	$(if $(SCALE),$(BIN)/python -m eval.experiments.scale \
		$(if $(wildcard ../shared/data/corpus-reviews-speeches.txt),--corpus ../shared/data/corpus-reviews-speeches.txt))

loadtest: $(INSTALLED) ## Reliability of distill serve on MODEL's int8 export (runs/default's transformer; exported first if missing): fuzz, 16 clients, a 5-minute soak, a 512 MiB body, signals; fails on any mismatch (SHORT=1: under a minute)
	$(if $(wildcard $(MODEL)/model_int8.onnx),,$(BIN)/distill export --run $(RUN))
	$(BIN)/python -m eval.experiments.reliability --model $(MODEL) --precision int8 $(if $(SHORT),--short)

docs: $(INSTALLED) ## Write every figure in README.md and docs/ from the runs kept in docs/results/ (RUN=runs/default, once evaluated, is kept first; COLLECTION=RUN keeps a collection run; REPEAT=RUN a fresh clone's run of the default recipe; CHECK=1: only say which differ)
	$(BIN)/python -m eval.published $(if $(CHECK),--check,$(if $(wildcard $(RUN)/report.json),--run $(RUN)) \
		$(if $(COLLECTION),--collection $(COLLECTION)) $(if $(REPEAT),--repeat $(REPEAT)))

test: $(INSTALLED) ## Run the tests
	$(BIN)/pytest -q --durations=15

lint: $(INSTALLED) ## Check style with ruff
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(INSTALLED) ## Format the code with ruff
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean: ## Remove runs and caches (keeps .venv)
	rm -rf runs .pytest_cache
