# Entry points for newcomers (README): `make demo` runs the main job, `make test` the test suite.
# Both create .venv on first use. Shared data and checkpoints are read from ../shared when present.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
TORCHATTACKS := torchattacks==3.5.1
export ROBUSTADDER_DATA ?= $(abspath $(SHARED)/data)

.PHONY: setup demo test lint
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
	$(BIN)/robustadder eval --model $(SHARED)/checkpoints/thirdparty-addernet-resnet20-cifar10.pt --attack none --attack pgd --n 1000

lint: setup
	$(BIN)/ruff check robustadder tests

test: lint
	$(BIN)/python -m pytest -q
