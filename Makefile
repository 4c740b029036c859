# Drover build entry points. `make test` is what CI runs.
GO      ?= go
BIN     := bin
# Missing cmd dirs are skipped by the build loops.
BINARIES := drover droverhub droverctl devsim drover-plugin-modbus drover-plugin-serial
PKGS    := ./...
# Race detector is on in CI-sized runs; turn it off with RACE= for quick local loops.
RACE    ?= -race
# The version every binary reports (internal/version): the nearest v* tag
# without its "v" (with -N-gSHA when commits follow it), else
# 0.0.0-N-gSHA; -dirty when the tree has uncommitted changes.
ifeq ($(origin VERSION),undefined)
VERSION := $(shell v=$$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null) && echo "$$v" | sed "s/^v//" || \
	echo "0.0.0-$$(git rev-list --count HEAD 2>/dev/null || echo 0)-g$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$$(git diff --quiet HEAD 2>/dev/null || echo -dirty)")
endif
# Timestamps inside the packages: the last commit's, so a rebuild of the same
# commit gives the same bytes.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
# grpcnotrace drops gRPC's x/net/trace (and html/template with it): 2.7 MB
# less code mapped into the gateway; -s -w drop the symbol table and DWARF
# from the files (stack traces keep working). -trimpath, -buildvcs=false and
# an empty -buildid keep paths, VCS state and IDs out of the binaries, so the
# same commit builds the same bytes (reproducible).
LDFLAGS    := -s -w -buildid= -X github.com/drover-iot/drover/internal/version.Version=$(VERSION)
BUILDFLAGS ?= -tags grpcnotrace -trimpath -buildvcs=false -ldflags "$(LDFLAGS)"

# Release: cgo cross builds with Debian's cross compilers (SQLite is
# mattn/go-sqlite3). GOARCH arm is armhf: GOARM=7, hard float.
DIST           ?= dist
RELEASE_ARCHES ?= amd64 arm64 arm
CC_amd64 ?= $(if $(filter x86_64,$(shell uname -m)),gcc,x86_64-linux-gnu-gcc)
CC_arm64 ?= aarch64-linux-gnu-gcc
CC_arm   ?= arm-linux-gnueabihf-gcc
QEMU_arm64 := qemu-aarch64 -L /usr/aarch64-linux-gnu
QEMU_arm   := qemu-arm -L /usr/arm-linux-gnueabihf
# The package builder (nfpm) is its own module: none of its code reaches a Drover binary.
RELEASE_TOOL = $(GO) run -C cmd/drover-release .

.PHONY: all build test bench lint proto demo soak clean release release-test package-test

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
	cd cmd/drover-release && $(GO) test -count=1 ./...

bench: build
	DROVER_BIN=$(CURDIR)/$(BIN) DROVER_BENCH=1 $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./test/bench/... $(BENCHFLAGS)

# Fault-injection soak: 100 cycles of hub stops and gateway SIGKILLs (CI runs a few in `make test`).
soak: build
	DROVER_BIN=$(CURDIR)/$(BIN) DROVER_SOAK_CYCLES=100 $(GO) test -run Soak -count=1 -timeout 120m ./test/soak/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$') 2>/dev/null); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -C cmd/drover-release ./...
	@# armhf is 32-bit: int is 32 bits there. Type-check everything for it
	@# without the cross compiler (no cgo), so `make release` cannot be the first to notice.
	GOARCH=arm GOARM=7 CGO_ENABLED=0 $(GO) build $(PKGS)
	@# go.mod lists exactly what the code imports, direct requirements as direct.
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum not tidy: run go mod tidy"; exit 1; }
	@$(GO) mod tidy -C cmd/drover-release -diff || { echo "cmd/drover-release: go.mod/go.sum not tidy"; exit 1; }

proto:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc -I plugins/proto \
		--go_out=plugins/proto --go_opt=paths=source_relative \
		--go-grpc_out=plugins/proto --go-grpc_opt=paths=source_relative \
		plugins/proto/*.proto

demo: build
	$(BIN)/drover demo

# Binaries for every architecture, the .deb packages and SHA256SUMS in $(DIST)/.
release:
	rm -rf $(DIST)
	$(MAKE) $(addprefix release-deb-,$(RELEASE_ARCHES))
	cd $(DIST) && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS
	@echo "release $(VERSION) in $(DIST)/"; cat $(DIST)/SHA256SUMS

release-bin-%:
	@mkdir -p $(DIST)/linux-$*
	@for b in $(BINARIES); do \
		if [ -d cmd/$$b ] && ls cmd/$$b/*.go >/dev/null 2>&1; then \
			echo "build linux/$* $$b"; \
			CGO_ENABLED=1 GOOS=linux GOARCH=$* GOARM=7 CC=$(CC_$*) \
				$(GO) build $(BUILDFLAGS) -o $(DIST)/linux-$*/$$b ./cmd/$$b || exit 1; \
		fi; \
	done

release-deb-%: release-bin-%
	$(RELEASE_TOOL) -root $(CURDIR) -bin $(CURDIR)/$(DIST)/linux-$* -arch $* -version $(VERSION) -out $(CURDIR)/$(DIST)

# qemu-user wrappers named like the binaries: DROVER_BIN for the real-process
# tests, so hub, gateway, plugin and devsim all run emulated (no binfmt needed).
qemu-wrappers-%: release-bin-%
	@mkdir -p $(DIST)/qemu-$*
	@for f in $(DIST)/linux-$*/*; do \
		printf '#!/bin/sh\nexec %s %s "$$@"\n' "$(QEMU_$*)" "$(CURDIR)/$$f" > $(DIST)/qemu-$*/$${f##*/}; \
		chmod 0755 $(DIST)/qemu-$*/$${f##*/}; \
	done

# The amd64 packages from bin/ (the same flags as release): contents,
# conffiles, maintainer scripts, install/upgrade/remove/purge in a throwaway
# root, unit files, the installed drover. make test runs the same tests
# (test/release is in ./...); this target runs only them.
package-test: build
	cd cmd/drover-release && $(GO) test -count=1 ./...
	DROVER_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 10m ./test/release/

# arm64 and armhf under qemu-user: version and config check for both, and the
# gateway's basic end-to-end check with hub, gateway, Modbus plugin and devsim
# all armhf. Slow (three cgo cross builds, emulation), so not in make test.
release-test: qemu-wrappers-arm64 qemu-wrappers-arm
	DROVER_DIST=$(CURDIR)/$(DIST) $(GO) test -count=1 -run 'TestCross' -timeout 15m ./test/release/
	DROVER_BIN=$(CURDIR)/$(DIST)/qemu-arm $(GO) test -count=1 -timeout 15m \
		-run 'TestGatewayEndToEnd/children_provisioned_and_telemetry_arrives' ./test/e2e/

clean:
	rm -rf $(BIN) $(DIST)

print-version:
	@echo $(VERSION)
