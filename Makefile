# Entry points for newcomers (README): `make demo` runs the main job, `make test` the test suite.
# Both create .venv on first use. Shared data and checkpoints are read from ../shared when present.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
TORCHATTACKS := torchattacks==3.5.1
SYSTEM_TOOLS := texlive-latex-base texlive-latex-recommended texlive-fonts-recommended chromium
export ROBUSTADDER_DATA ?= $(abspath $(SHARED)/data)

.PHONY: setup demo test lint tools
setup: $(VENV)/.setup-done

$(VENV)/.setup-done: requirements.txt requirements-dev.txt pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	@# torchattacks 3.5.1 declares requests~=2.25.1 and torchvision, which its code never imports;
	@# --no-deps keeps pip from pulling a CUDA torchvision (and an old requests) into the venv.
	$(BIN)/pip install -q --no-deps $(TORCHATTACKS)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

demo: setup
	$(BIN)/robustadder eval --model ann20-awn --attack pgd --n 1000

# pdflatex and chromium let the tests compile the LaTeX tables and render the HTML report; installed
# from Debian when missing and possible (root), otherwise those two tests skip (CI requires them).
tools:
	@if command -v pdflatex >/dev/null && command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_TOOLS) >/dev/null; \
	else echo "note: pdflatex/chromium missing; the LaTeX-compile and HTML-render tests will skip"; fi

lint: setup
	$(BIN)/ruff check robustadder tests

test: lint tools
	$(BIN)/python -m pytest -q
