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
LOADGEN    := bench/bin/loadgen
TRANSPORT  ?= grpc
# Empty: derived from the CPUs (tandem_stack.stack.default_workers; README, "Settings").
WORKERS    ?=
, := ,
MODELS     := models/digits/1/model.onnx
MINILM     := models/minilm/1/model.onnx

GO_SOURCES := $(shell find edge-go -name '*.go' -not -path '*/bin/*' 2>/dev/null) edge-go/go.mod edge-go/go.sum
PY_SOURCES := $(shell find inference-py/src -name '*.py' 2>/dev/null)
LOADGEN_SOURCES := $(shell find bench/loadgen -name '*.go' 2>/dev/null) bench/loadgen/go.mod bench/loadgen/go.sum

.PHONY: help setup build k8s-tools chromium models proto proto-check lint test test-go fuzz test-py test-e2e bench bench-quick bench-locust soak demo run up up-core down test-compose clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: $(VENV)/.installed build models k8s-tools chromium ## install everything: venv, Go modules and tools, gateway, models, Chromium

# Long steps say what they do and, after, how long they took: $(call timed,what,command).
timed = @printf '==> %s\n' '$(1)'; t0=$$(date +%s); $(2); printf '    done in %ss: %s\n' $$(( $$(date +%s) - t0 )) '$(1)'

$(VENV)/.installed: inference-py/pyproject.toml deploy/local/pyproject.toml tests/requirements.txt bench/requirements.txt
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(call timed,Python packages into $(VENV) (torch is large: minutes the first time),$(PY) -m pip install --quiet -e 'inference-py[torch$(,)dev]' -e deploy/local -r tests/requirements.txt -r bench/requirements.txt)
	touch $@

build: $(GATEWAY) $(NATS) $(LOADGEN) ## build the gateway, a standalone nats-server and the load driver

$(GATEWAY): $(GO_SOURCES)
	$(call timed,the gateway ($(GATEWAY)),cd edge-go && go build -o bin/gateway ./cmd/gateway)

# The same nats-server the gateway embeds, from the module pinned in edge-go/go.mod.
$(NATS): edge-go/go.mod edge-go/go.sum
	$(call timed,nats-server ($(NATS)),cd edge-go && go build -o bin/nats-server github.com/nats-io/nats-server/v2)

# The open-loop load driver; it uses the gateway module's generated OIP code.
$(LOADGEN): $(LOADGEN_SOURCES) $(wildcard edge-go/gen/inferencepb/*.go) edge-go/go.mod
	$(call timed,the load driver ($(LOADGEN)),cd bench/loadgen && go build -o ../bin/loadgen .)

k8s-tools: ## the pinned kustomize that tests/test_deploy.py renders the manifests with
	$(call timed,kustomize (deploy/k8s/tools),cd deploy/k8s/tools && go tool kustomize version >/dev/null)

# tests/test_demopage.py drives Debian's chromium through Playwright (which never
# downloads a browser here). As root, a missing one is installed with apt-get;
# otherwise the target says what to install.
chromium: ## Debian's chromium for the demo page's browser test (apt-get, when root)
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    printf '==> %s\n' "Debian's chromium (apt-get install chromium)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1 \
	      || { echo "apt-get install chromium failed: install it by hand for tests/test_demopage.py" >&2; exit 1; }; \
	  else echo "tests/test_demopage.py needs Chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

models: $(MODELS) $(MINILM) ## train the digits MLP, export it and MiniLM for both backends

$(MODELS): $(VENV)/.installed $(PY_SOURCES)
	$(call timed,training and exporting the models,$(PY) -m tandem_inference build-models --repository models)

# all-MiniLM-L6-v2 from the pinned package, for both backends (about 175 MB).
$(MINILM): $(VENV)/.installed inference-py/src/tandem_inference/minilm.py
	$(call timed,exporting MiniLM (models/minilm*),HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m tandem_inference build-minilm --repository models --force)

proto: $(VENV)/.installed ## regenerate the Go and Python code from proto/
	proto/generate.sh

proto-check: $(VENV)/.installed ## lint the protos; fail if the committed generated code is stale
	cd proto/tools && go tool buf lint ..
	tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && proto/generate.sh $$tmp && \
	  diff -r $$tmp/edge-go/gen edge-go/gen && \
	  diff -r -x __pycache__ $$tmp/inference-py/src/tandem_inference/pb inference-py/src/tandem_inference/pb && \
	  echo "generated code is up to date"

lint: $(VENV)/.installed proto-check ## gofmt, go vet, ruff, mypy, buf
	test -z "$$(gofmt -l edge-go bench/loadgen)" || { gofmt -l edge-go bench/loadgen; exit 1; }
	cd edge-go && go vet ./...
	# loadgen requires edge-go through a replace: its go.mod must follow edge-go's.
	cd bench/loadgen && go vet ./... && go mod tidy -diff
	cd deploy/k8s/tools && go mod tidy -diff
	$(VENV)/bin/ruff check inference-py tests bench deploy/local
	$(VENV)/bin/ruff format --check inference-py tests bench deploy/local
	cd inference-py && ../$(VENV)/bin/mypy
	cd tests && ../$(VENV)/bin/mypy .
	cd deploy/local && ../../$(VENV)/bin/mypy --strict src
	$(VENV)/bin/mypy --config-file bench/mypy.ini

test: setup lint test-go fuzz test-py test-e2e bench-quick ## run every test: Go (-race), Python unit, cross-language, bench pipeline

test-go: ## Go unit tests with the race detector
	cd edge-go && go test -race -count=1 ./...
	cd bench/loadgen && go test -race -count=1 ./...

# Native Go fuzzing, a short run per target on top of the committed seed corpora
# (edge-go/internal/restcodec/testdata/fuzz/); FUZZTIME=5m for a longer hunt.
FUZZTIME ?= 10s
fuzz: ## fuzz the REST JSON decoder and the binary tensor extension parser (FUZZTIME each)
	cd edge-go && go test -run '^$$' -fuzz '^FuzzDecodeInferRequest$$' -fuzztime $(FUZZTIME) ./internal/restcodec
	cd edge-go && go test -run '^$$' -fuzz '^FuzzBinarySplit$$' -fuzztime $(FUZZTIME) ./internal/restcodec

test-py: $(VENV)/.installed models ## Python unit tests: the inference service and the bench's summaries
	$(PY) -m pytest -q inference-py/tests
	$(PY) -m pytest -q bench/tests

test-e2e: setup ## cross-language tests: the real gateway and Python service as processes
	$(PY) -m pytest -q tests

bench: setup ## the load tests side by side, same CPU budget and all cores, into bench/results/<UTC time>/ (about 24 minutes)
	$(PY) bench/run.py

bench-quick: setup ## the same pipeline, seconds per step (2-3 minutes); fails on any error (part of make test)
	$(PY) bench/run.py --quick

bench-locust: setup ## the Locust users, one scenario at a time, with Locust's CSV and HTML reports
	$(PY) bench/run.py --locust

soak: setup ## fixed moderate load for 10 minutes: errors, p99 and every process's RSS over time (bench/scratch/soak/)
	$(PY) bench/run.py --soak 10m --soak-rate 2000

demo: setup ## start the stack, send real digits through it, print predictions and accuracy, stop
	$(PY) -m tandem_stack demo

run: setup ## run the whole stack in the foreground until Ctrl-C (TRANSPORT=grpc|nats; WORKERS=n, default: from the CPUs)
	$(PY) -m tandem_stack run --transport $(TRANSPORT) $(if $(WORKERS),--workers $(WORKERS))

up: .env ## the stack in containers: NATS, two workers, gateway, collector, Jaeger, Prometheus, Grafana, Locust (needs Docker)
	docker compose up --build --wait
	@echo "demo page http://localhost:8000/  Jaeger http://localhost:16686  Grafana http://localhost:3000  Locust http://localhost:8089"

up-core: .env ## the small machine's stack: NATS, two workers and the gateway only, no tracing export
	OTEL_TRACES_EXPORTER=none docker compose up --build --wait nats inference gateway
	@echo "demo page http://localhost:8000/  OIP REST http://localhost:8000/v2  gRPC localhost:8001"

# compose's secrets (see .env.example): random passwords, made once, readable only by you.
.env:
	umask 077 && $(PYTHON_SYS) -c 'import secrets; [print(f"{k}_PASSWORD={secrets.token_hex(24)}") for k in ("NATS_GATEWAY", "NATS_WORKER", "NATS_OBSERVER", "GRAFANA_ADMIN")]; print("TANDEM_API_KEYS="); print("COMPOSE_PROFILES=observability,load")' > $@
	@echo "wrote .env with random passwords"

down: ## stop and remove the containers (every profile)
	docker compose --profile observability --profile load down --remove-orphans

test-compose: ## on a machine with Docker: build, up (healthy), REST and gRPC through the gateway, --scale inference=3, down
	bash deploy/compose/test-compose.sh

clean: ## remove built binaries and models (keeps the venv)
	rm -rf edge-go/bin bench/bin models/*/[0-9]*/
