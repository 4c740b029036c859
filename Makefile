# Drover build entry points. `make test` is what CI runs.
GO      ?= go
BIN     := bin
BINARIES := drover droverhub droverctl devsim drover-plugin-modbus drover-plugin-serial
PKGS    := ./...
# Race detector is on in CI-sized runs; turn it off with RACE= for quick local loops.
RACE    ?= -race
# grpcnotrace drops gRPC's x/net/trace (and html/template with it): 2.7 MB
# less code mapped into the gateway; -s -w drop the symbol table and DWARF
# from the files (stack traces keep working).
BUILDFLAGS ?= -tags grpcnotrace -trimpath -ldflags "-s -w"

.PHONY: all build test bench lint proto demo soak clean

all: build

build:
	@mkdir -p $(BIN)
	@for b in $(BINARIES); do \
		if [ -d cmd/$$b ] && ls cmd/$$b/*.go >/dev/null 2>&1; then \
			$(GO) build $(BUILDFLAGS) -o $(BIN)/$$b ./cmd/$$b || exit 1; \
		fi; \
	done

# Tests start real processes (hub, plugins, simulators), so build first.
test: build lint
	DROVER_BIN=$(CURDIR)/$(BIN) $(GO) test $(RACE) -count=1 -timeout 20m $(PKGS)

bench: build
	DROVER_BIN=$(CURDIR)/$(BIN) DROVER_BENCH=1 $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./test/bench/... $(BENCHFLAGS)

# Fault-injection soak: 100 cycles of hub stops and gateway SIGKILLs (CI runs a few in `make test`).
soak: build
	DROVER_BIN=$(CURDIR)/$(BIN) DROVER_SOAK_CYCLES=100 $(GO) test -run Soak -count=1 -timeout 120m ./test/soak/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$') 2>/dev/null); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

proto:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc -I plugins/proto \
		--go_out=plugins/proto --go_opt=paths=source_relative \
		--go-grpc_out=plugins/proto --go-grpc_opt=paths=source_relative \
		plugins/proto/*.proto

demo: build
	$(BIN)/drover demo

clean:
	rm -rf $(BIN)
