# The two set-up commands of the README: `make demo` and `make test`.
GO ?= go
BIN := bin/mlagent

.PHONY: demo test lint build deps bench

# Static (no cgo): every sandbox's PID 1 is this binary, and a static one
# starts about a millisecond sooner. Nothing in mlagent needs cgo.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/mlagent

deps:
	./scripts/deps.sh

# The offline reference session: scripted model, real sandbox, real training.
demo: deps build
	./$(BIN) demo

# Every test, with the machine features they need installed first. As root
# (CI) the Kubernetes tests must run, not skip (MLAGENT_REQUIRE_KUBE).
test:
	MLAGENT_DEPS_BROWSER=1 MLAGENT_DEPS_KUBE=1 ./scripts/deps.sh
	MLAGENT_REQUIRE_KUBE=$${MLAGENT_REQUIRE_KUBE:-$$(test "$$(id -u)" = 0 && echo 1)} \
	  $(GO) test -count=1 -timeout 30m ./...

# Static checks, which must report nothing: gofmt, go vet, a tidy go.mod,
# staticcheck and deadcode (built once per pinned version by deps.sh).
LINT_BIN ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mlagent/lint
lint:
	MLAGENT_LINT_BIN=$(LINT_BIN) ./scripts/deps.sh lint
	@out=$$(gofmt -l cmd internal); if [ -n "$$out" ]; then echo "gofmt -l (run gofmt -w):"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(LINT_BIN)/staticcheck ./...
	@out=$$($(LINT_BIN)/deadcode -test ./...); if [ -n "$$out" ]; then echo "deadcode -test (unreachable code):"; echo "$$out"; exit 1; fi

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...
