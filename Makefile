# Tandem: a Go edge in front of Python ML. `make help` lists the targets.
#
# Everything is installed through this file (`make setup`), idempotently:
# the Python venv in .venv/, Go modules and tools, the gateway binary, the models.

SHELL      := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
GATEWAY    := edge-go/bin/gateway
NATS       := edge-go/bin/nats-server
TRANSPORT  ?= grpc
MODELS     := models/digits/1/model.onnx

GO_SOURCES := $(shell find edge-go -name '*.go' -not -path '*/bin/*' 2>/dev/null) edge-go/go.mod edge-go/go.sum
PY_SOURCES := $(shell find inference-py/src -name '*.py' 2>/dev/null)

.PHONY: help setup build models proto proto-check lint test test-go test-py test-e2e demo run up down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(VENV)/.installed build models ## install everything: venv, Go modules and tools, gateway, models

$(VENV)/.installed: inference-py/pyproject.toml tests/requirements.txt
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e 'inference-py[torch,dev]' -r tests/requirements.txt
	touch $@

build: $(GATEWAY) $(NATS) ## build the gateway and a standalone nats-server (for tests and NATS clusters)

$(GATEWAY): $(GO_SOURCES)
	cd edge-go && go build -o bin/gateway ./cmd/gateway

# The same nats-server the gateway embeds, from the module pinned in edge-go/go.mod.
$(NATS): edge-go/go.mod edge-go/go.sum
	cd edge-go && go build -o bin/nats-server github.com/nats-io/nats-server/v2

models: $(MODELS) ## train the digits MLP and export it for both backends

$(MODELS): $(VENV)/.installed $(PY_SOURCES)
	$(PY) -m tandem_inference build-models --repository models

proto: $(VENV)/.installed ## regenerate the Go and Python code from proto/
	proto/generate.sh

proto-check: $(VENV)/.installed ## lint the protos; fail if the committed generated code is stale
	cd proto/tools && go tool buf lint ..
	tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && proto/generate.sh $$tmp && \
	  diff -r $$tmp/edge-go/gen edge-go/gen && \
	  diff -r -x __pycache__ $$tmp/inference-py/src/tandem_inference/pb inference-py/src/tandem_inference/pb && \
	  echo "generated code is up to date"

lint: $(VENV)/.installed proto-check ## gofmt, go vet, ruff, mypy, buf
	test -z "$$(gofmt -l edge-go)" || { gofmt -l edge-go; exit 1; }
	cd edge-go && go vet ./...
	$(VENV)/bin/ruff check inference-py tests
	$(VENV)/bin/ruff format --check inference-py tests
	cd inference-py && ../$(VENV)/bin/mypy
	cd tests && ../$(VENV)/bin/mypy .

test: setup lint test-go test-py test-e2e ## run every test: Go (-race), Python unit, cross-language

test-go: ## Go unit tests with the race detector
	cd edge-go && go test -race -count=1 ./...

test-py: $(VENV)/.installed models ## Python unit tests
	$(PY) -m pytest -q inference-py/tests

test-e2e: setup ## cross-language tests: the real gateway and Python service as processes
	$(PY) -m pytest -q tests

demo: setup ## start the stack, send real digits through it, print predictions and accuracy, stop
	$(PY) tests/demo.py

run: setup ## run the whole stack in the foreground until Ctrl-C (TRANSPORT=grpc|nats)
	$(PY) tests/stack.py run --transport $(TRANSPORT)

up: ## the stack in containers: NATS, two workers, gateway, Jaeger, Prometheus (needs Docker)
	docker compose up --build

down: ## stop the containers
	docker compose down

clean: ## remove built binaries and models (keeps the venv)
	rm -rf edge-go/bin models/*/[0-9]*/
