# sandboxd. `make help` lists the targets. Heavy artifacts (runsc, rootfs)
# are cached outside the checkout in $(CACHE), keyed by their inputs.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CACHE ?= /var/cache/sandboxd
export SANDBOXD_CACHE := $(CACHE)

# Where the cached artifacts for the current inputs live (computed, not built).
RUNSC_PATH := $(shell scripts/build-runsc.sh --path)
ROOTFS_PATH := $(shell rootfs/build.sh --path)
LDFLAGS := -X main.defaultRunsc=$(RUNSC_PATH) -X main.defaultRootfs=$(ROOTFS_PATH)

# Extra flags for `make run`, e.g. make run ARGS='--policy policy/examples/grader.yaml'.
ARGS ?=

.PHONY: help build runsc rootfs proto proto-check lint unit test test-deps bench soak run clean

help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build bin/sandboxd, bin/sandboxctl and bin/sandbox-agent.
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/sandboxd ./cmd/sandboxd
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/sandboxctl ./cmd/sandboxctl
	CGO_ENABLED=0 go build -trimpath -o bin/sandbox-agent ./cmd/sandbox-agent

runsc: ## Build runsc from the gvisor.dev/gvisor version pinned in go.mod (cached).
	@scripts/build-runsc.sh >/dev/null

rootfs: ## Build the Python rootfs from Debian bookworm with mmdebstrap (cached).
	@rootfs/build.sh >/dev/null

proto: ## Regenerate the gRPC code in proto/ with the pinned buf and plugins.
	cd proto && go tool -modfile=tools.mod buf lint && go tool -modfile=tools.mod buf generate

proto-check: ## Fail if the generated code in proto/ is not what `make proto` makes.
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	cd proto && go tool -modfile=tools.mod buf lint && \
	go tool -modfile=tools.mod buf generate -o $$tmp && \
	for f in $$(cd $$tmp && find . -name '*.go'); do \
		cmp -s $$tmp/$$f $$f || { echo "proto/$$f is stale: run make proto"; exit 1; }; \
	done && \
	for f in $$(find . -name '*.pb.go'); do \
		[ -f $$tmp/$$f ] || { echo "proto/$$f has no .proto: remove it"; exit 1; }; \
	done && echo "proto: generated code is current"

lint: ## gofmt and go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed: $$out"; exit 1; }
	go vet ./...

unit: ## Unit tests only (no root, no runsc).
	go test -race ./...

test: runsc rootfs lint proto-check test-deps ## Everything: lint, generated code, unit and end-to-end tests (root).
	SANDBOXD_E2E=1 SANDBOXD_RUNSC=$(RUNSC_PATH) SANDBOXD_ROOTFS=$(ROOTFS_PATH) \
		go test -race -count=1 -timeout 30m ./...

test-deps: ## Install the Debian packages the tests run when missing: node, npm, nginx (root).
	@scripts/install-test-deps.sh

bench: runsc rootfs ## Go benchmarks: create->first Exec (pool hit, cold) and Exec round trip, p50/p95/p99 (root).
	SANDBOXD_E2E=1 SANDBOXD_RUNSC=$(RUNSC_PATH) SANDBOXD_ROOTFS=$(ROOTFS_PATH) \
		go test -run '^$$' -bench . -benchtime 50x ./cmd/sandboxd/e2e/ ./runtime/... ./cmd/sandbox-agent/

# The fuzz targets `make soak` runs, as PACKAGE:FUZZER; each gets FUZZTIME.
# Each new input that widens coverage is minimized in at most 1000 runs: by
# default the fuzzer spends up to a minute on each, and on long inputs
# (paths near PATH_MAX) that stalls it for most of its time.
FUZZ_TARGETS := ./policy:FuzzParse \
	./runtime/identifiers:FuzzSandboxPath ./runtime/identifiers:FuzzValidateID ./runtime/identifiers:FuzzValidateLabels \
	./runtime/manager:FuzzCheckEdit ./runtime/manager:FuzzDirPath ./runtime/manager:FuzzCheckEnv ./runtime/manager:FuzzCheckExec \
	./runtime/manager:FuzzLower ./runtime/manager:FuzzSanitizeImages ./runtime/manager:FuzzSanitizeFiles ./runtime/manager:FuzzClipOutput
FUZZTIME ?= 1m
# How long the churn soak runs (SANDBOXD_SOAK); its samples go to the CSV
# file named by SANDBOXD_SOAK_CSV, if set.
SOAK ?= 30m

soak: runsc rootfs ## Fuzz every parser and request validator (1m each), then 30m of churn under faults (root).
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
		go test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1000x "$${t%%:*}" || exit 1; \
	done
	SANDBOXD_SOAK=$(SOAK) SANDBOXD_E2E=1 SANDBOXD_RUNSC=$(RUNSC_PATH) SANDBOXD_ROOTFS=$(ROOTFS_PATH) \
		go test -race -count=1 -run '^TestSoakChurn$$' -v -timeout 40m ./cmd/sandboxd/e2e/

run: runsc rootfs build ## Run the daemon with the embedded default policy (root).
	bin/sandboxd $(ARGS)

clean: ## Remove bin/ (the cache in $(CACHE) stays).
	rm -rf bin
