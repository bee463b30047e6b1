# MTW — two commands: `make run` brings the system up, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
GENERATED := mtw/common mtw/dataset mtw/training mtw/evaluation mtw/registry

.PHONY: install generate run test test-unit test-integration lint bench clean

install: $(STAMP) generate node_modules/.installed

# torch goes first, pinned to the CPU wheel, so nothing later pulls a CUDA build.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $@

# Generated protobuf/gRPC code lands inside the `mtw` package (git-ignored).
generate: $(STAMP)
	rm -rf $(GENERATED)
	$(PY) -m grpc_tools.protoc -Iprotos -I$$($(PY) -c 'import google.api, pathlib; print(pathlib.Path(google.api.__path__[0]).parents[1])') \
		--python_out=. --grpc_python_out=. --pyi_out=. $(PROTO_FILES)
	find $(GENERATED) -type d -exec touch {}/__init__.py \;

run: install
	$(PY) -m devstack

test: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest -q tests

test-unit: install
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q tests/unit

test-integration: install
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q tests/integration

lint: install
	npx --no-install buf lint protos
	$(BIN)/ruff check .

bench: install
	$(PY) -m bench.upload

clean:
	rm -rf $(VENV) node_modules $(GENERATED)
