# The two set-up commands of the README: `make demo` and `make test`.
GO ?= go
BIN := bin/mlagent

.PHONY: demo test build deps bench

# Static (no cgo): every sandbox's PID 1 is this binary, and a static one
# starts about a millisecond sooner. Nothing in mlagent needs cgo.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/mlagent

deps:
	./scripts/deps.sh

# The offline reference session: scripted model, real sandbox, real training.
demo: deps build
	./$(BIN) demo

# Every test, with the machine features they need installed first.
test:
	MLAGENT_DEPS_BROWSER=1 ./scripts/deps.sh
	$(GO) test -count=1 -timeout 20m ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...
