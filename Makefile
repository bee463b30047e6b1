# MTW — two commands: `make run` brings the system up, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
PROTO_FILES := $(shell find protos/mtw -name '*.proto' | sort)
# google/api and google/rpc protos, copied from the googleapis-common-protos wheel
# into a git-ignored buf module so `buf` works offline (see protos/buf.yaml).
PROTO_DEPS := protos/.deps/googleapis
# Branch `buf breaking` compares against.
BUF_AGAINST ?= main
# The dashboard's front end (npm packages, esbuild bundle), served by the gateway.
WEB := gateway/web
GENERATED := mtw/common mtw/dataset mtw/training mtw/evaluation mtw/registry mtw/insights

.PHONY: install generate proto-deps run test test-unit test-integration lint buf-lint buf-breaking bench clean \
	stubs stubs-ts stubs-go stubs-java stub-tools-go stub-tools-java chromium

install: $(STAMP) generate node_modules/.installed $(WEB)/dist/.built chromium

# The dashboard (gateway/web): npm packages from its lockfile, bundled by esbuild.
$(WEB)/node_modules/.installed: $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --silent --no-audit --no-fund --ignore-scripts
	touch $@

$(WEB)/dist/.built: $(WEB)/node_modules/.installed $(WEB)/build.mjs $(shell find $(WEB)/src -type f)
	cd $(WEB) && node build.mjs
	touch $@

# Browser tests drive Debian's chromium through Playwright (never a browser download).
chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

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
	find $$(ls -d $(GENERATED) 2>/dev/null) -type d -exec touch {}/__init__.py \;

run: install
	$(PY) -m devstack

test: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest -q -rfE --durations=25 tests

test-unit: install
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q tests/unit

test-integration: install
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q tests/integration

proto-deps:
	site=$$($(PY) -c 'import google.api, pathlib; print(pathlib.Path(google.api.__path__[0]).parent)') && \
	for d in api rpc; do mkdir -p $(PROTO_DEPS)/google/$$d && cp $$site/$$d/*.proto $(PROTO_DEPS)/google/$$d/; done

lint: install buf-lint buf-breaking
	$(BIN)/ruff check .

buf-lint: proto-deps
	npx --no-install buf lint protos

# Compares protos/ with the same folder on $(BUF_AGAINST). buf cannot read the
# git-ignored google module from a git input, so the branch's protos are
# exported to a temporary folder and given the local google module and today's
# buf.yaml. Offline throughout.
buf-breaking: proto-deps
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	git archive $(BUF_AGAINST) protos | tar -x -C "$$tmp" && \
	mkdir -p "$$tmp/protos/.deps" && cp -r $(PROTO_DEPS) "$$tmp/protos/.deps/" && \
	cp protos/buf.yaml "$$tmp/protos/buf.yaml" && \
	npx --no-install buf breaking protos --against "$$tmp/protos"

# Client stubs for other languages, from protos/ with `buf generate` and local plugins
# only (protos/buf.gen.*.yaml), into the git-ignored gen/: gen/ts (TypeScript) and
# gen/js (compiled CommonJS + .d.ts) for @grpc/grpc-js, gen/go (module
# github.com/mtw/mtw/gen/go), gen/java. Go and Java plugins and libraries come from
# Debian, installed here when missing. How to use them: protos/README.md.
# golang/protobuf 1.5 (not Debian's default 1.3): grpc-go's codec must understand the
# APIv2 messages protoc-gen-go makes.
STUB_GO_DEBS := golang-go protoc-gen-go protoc-gen-go-grpc golang-google-protobuf-dev \
	golang-github-golang-protobuf-1-5-dev golang-google-grpc-dev golang-google-genproto-dev
STUB_JAVA_DEBS := protobuf-compiler protobuf-compiler-grpc-java-plugin libprotobuf-java libgrpc-java \
	libguava-java libgeronimo-annotation-1.3-spec-java default-jdk-headless
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL = $(SUDO) apt-get install -y -q --no-install-recommends $(1) >/dev/null \
	|| { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q --no-install-recommends $(1) >/dev/null; }

stubs: stubs-ts stubs-go stubs-java

stubs-ts: node_modules/.installed proto-deps
	rm -rf gen/ts gen/js
	npx --no-install buf generate protos --template protos/buf.gen.ts.yaml --path protos/mtw
	npx --no-install tsc --outDir gen/js --declaration --module commonjs --target es2022 \
		--esModuleInterop --skipLibCheck --strict $$(find gen/ts -name '*.ts')

stubs-go: node_modules/.installed proto-deps stub-tools-go
	rm -rf gen/go
	npx --no-install buf generate protos --template protos/buf.gen.go.yaml --path protos/mtw
	printf 'module github.com/mtw/mtw/gen/go\n\ngo 1.19\n' > gen/go/go.mod

stubs-java: node_modules/.installed proto-deps stub-tools-java
	rm -rf gen/java
	npx --no-install buf generate protos --template protos/buf.gen.java.yaml --path protos/mtw

stub-tools-go:
	@dpkg -s $(STUB_GO_DEBS) >/dev/null 2>&1 || $(call APT_INSTALL,$(STUB_GO_DEBS))

stub-tools-java:
	@dpkg -s $(STUB_JAVA_DEBS) >/dev/null 2>&1 || $(call APT_INSTALL,$(STUB_JAVA_DEBS))

bench: install
	$(PY) -m bench.upload
	$(PY) -m bench.eval

clean:
	rm -rf $(VENV) node_modules $(GENERATED) protos/.deps gen $(WEB)/node_modules $(WEB)/dist
