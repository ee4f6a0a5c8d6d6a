# vncedge: two commands matter -
#   make demo   proxy + simulated VM + noVNC viewer, open the printed URL
#   make test   everything CI runs (unit, race, fuzz seeds, end to end)
# Everything else here is a building block of those two.

SHELL := /bin/bash
GO ?= go
BIN := bin
DEMO_LISTEN ?= 127.0.0.1:6080
DEMO_ADMIN ?= 127.0.0.1:6089
DEMO_VM ?= 127.0.0.2:5901
FUZZTIME ?= 5m
# Version stamping: `vncedge --version`, the start-up log line and
# vncedge_build_info all carry VERSION and COMMIT; the container image is
# tagged with VERSION and `make k8s-image` points the Kubernetes manifests
# at that tag, so all of them name the same build.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
IMAGE ?= registry.example.com/vncedge
KUSTOMIZATION ?= deploy/kubernetes/kustomization.yaml
# Debian packages the tests need (README.md lists each with what uses it;
# deploy/readme_test.go checks the two agree). prometheus brings promtool.
E2E_APT := chromium tigervnc-standalone-server tigervnc-tools x11-xserver-utils websockify novnc haproxy nginx-light prometheus redis-server
E2E_APT += openssl

.PHONY: all build web web-test demo test check vet fmt-check unit e2e deps go-deps e2e-deps bench fuzz soak clean image k8s-image print-version print-ldflags

all: build

build: go-deps
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vncedge ./cmd/vncedge
	$(GO) build -trimpath -o $(BIN)/bench ./cmd/bench

print-version:
	@echo $(VERSION)

print-ldflags:
	@echo '$(LDFLAGS)'

# make image: the container image, tagged $(IMAGE):$(VERSION). The build
# context has no .git, so the version and commit go in as build arguments.
image:
	docker build -f deploy/container/Dockerfile \
		--build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) \
		-t $(IMAGE):$(VERSION) .

# make k8s-image: point deploy/kubernetes at the image `make image` built
# (the kustomization's images: entry), so `kubectl apply -k` rolls out
# exactly that version.
k8s-image:
	@scripts/set-image.sh "$(KUSTOMIZATION)" "$(IMAGE)" "$(VERSION)"

go-deps:
	$(GO) mod download

# Our viewer page on the npm @novnc/novnc core (which ships no vnc.html).
web: web/dist/vnc.html
web/dist/vnc.html: web/package.json web/package-lock.json web/vnc.html web/app.js web/reconnect.js web/index.html web/build.mjs
	npm ci --prefix web --no-audit --no-fund
	node web/build.mjs

# make demo: a simulated VM (RFB 3.8, moving test pattern) on $(DEMO_VM) and
# vncedge on $(DEMO_LISTEN) serving the viewer; Ctrl-C stops both.
demo: build web
	@scripts/demo.sh "$(BIN)" "$(DEMO_LISTEN)" "$(DEMO_ADMIN)" "$(DEMO_VM)"

# make test: what CI runs. Installs the end-to-end tools when it can (root
# with apt-get, or CI=true), then runs every package's tests under -race,
# including the fuzz targets' seed corpora and the browser end-to-end test.
test: go-deps check e2e-deps web-test
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/e2e$$')
	$(GO) test -count=1 -v -timeout 10m ./e2e 2>&1 | tee /tmp/vncedge-e2e.log | grep -E '^(=== RUN|--- |\s+\S+_test.go:|ok|FAIL|PASS)'; exit $${PIPESTATUS[0]}

check: fmt-check vet

# The viewer's own logic (web/*.test.mjs: which session ends reconnect) under
# node's test runner. Node comes with e2e-deps; without it the run skips,
# except under CI=true.
web-test:
	@if command -v node >/dev/null; then node --test web/; \
	elif [ "$$CI" = true ]; then echo "web-test: node is missing under CI=true"; exit 1; \
	else echo "web-test: node not found; the viewer tests were skipped"; fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit: go-deps
	$(GO) test -race -count=1 -short ./...

# Tools for the end-to-end test: Debian's chromium, TigerVNC, websockify and
# noVNC, and npm's playwright-core (which drives /usr/bin/chromium and
# downloads no browser). Skipped with a message when we cannot install;
# the e2e test then skips loudly too, except under CI=true where it fails.
e2e-deps:
	@scripts/e2e-deps.sh $(E2E_APT)

e2e: go-deps e2e-deps
	$(GO) test -count=1 -v -timeout 10m ./e2e

# make bench: short runs of every load scenario against a freshly built
# proxy, beside the --direct baseline, the C-relay baseline (HAProxy in TCP
# mode, when installed; BENCH_CRELAY=0 skips it) and websockify, printing
# every figure and ratio; bench/run.sh full is the run BENCHMARKS.md records.
bench: build
	BENCH_BIN=$(BIN) bench/run.sh short

# make fuzz: run every fuzz target for FUZZTIME each (the seeds also run in make test).
fuzz: go-deps
	@scripts/fuzz.sh "$(FUZZTIME)"

# make soak: SOAK_MINUTES (15) of bench churn beside thousands of live sessions against a
# fresh proxy; fails when memory, descriptors or goroutines do not come back (leak).
soak: build
	@scripts/soak.sh "$(BIN)"

clean:
	rm -rf $(BIN) web/dist artifacts
