# Skiff build, image and test entry points. Everything installs what it needs.
SHELL := /bin/bash
# go1.27.3, fetched by the go command from the module proxy on first use: go1.26.8 has
# reachable standard-library vulnerabilities (make vulncheck). It overrides a
# GOTOOLCHAIN=local in the environment; go.mod's toolchain line says the same to others.
export GOTOOLCHAIN := go1.27.3
GO ?= go
ARCH ?= $(shell $(GO) env GOARCH)
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
IMAGE_OUT := $(CURDIR)/images/out/$(ARCH)
LDFLAGS := -s -w -X github.com/skiff-dev/skiff/installer.Version=$(VERSION) -X github.com/skiff-dev/skiff/images.DefaultRef=$(IMAGE_OUT)

.PHONY: all build agent image image-kube image-engine image-systemd test test-unit test-faults bench-boot clean up install uninstall

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/skiff ./cmd/skiff
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -o bin/skiff-wslinit ./vmm/qemu/internal/wslinit/skiff-wslinit  # backend qemu-wsl's stand-in init

# The guest agent is static and goes into the initrd.
agent:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) $(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o bin/skiff-agent-linux-$(ARCH) ./cmd/skiff-agent

# The guest image. The slow rootfs stage and the Docker engine built from source
# (image-engine) are cached by a hash of their recipes (under /var/cache/skiff/images,
# override with SKIFF_IMAGE_CACHE). IMAGE_FLAGS passes build.sh options to the image
# targets, e.g. IMAGE_FLAGS="--engine-bin docker=DIR" for an engine layer with locally
# built programs, or IMAGE_FLAGS=--packaged-engine for Debian's engine.
IMAGE_FLAGS ?=
image: agent
	images/build.sh $(ARCH) bin/skiff-agent-linux-$(ARCH) $(IMAGE_OUT) $(IMAGE_FLAGS)

# The image with the Kubernetes layer (images/kubelayer.sh), which `make image` adds only
# when it is cached: a cold build is the Kubernetes build, ~20 min and ~3 GB of Go cache.
image-kube: agent
	images/build.sh $(ARCH) bin/skiff-agent-linux-$(ARCH) $(IMAGE_OUT) --kube $(IMAGE_FLAGS)

# The Docker engine from source as one multi-call binary (dockerd, containerd and its runc
# shim), cached by recipe; prints its directory. `make image` builds it when it is not
# cached. A cold build is ~10 min of Go build (2 loaded cores).
image-engine:
	images/enginebuild.sh $(ARCH)

image-systemd: agent
	images/build.sh $(ARCH) bin/skiff-agent-linux-$(ARCH) $(CURDIR)/images/out/$(ARCH)-systemd --variant systemd $(IMAGE_FLAGS)

test-unit:
	$(GO) test ./...

# The whole suite, as CI runs it: host packages, the image, unit tests, the end-to-end
# tests against real VMs, and the cross-OS checks.
test: build
	.ci/test-all

bench-boot: build image image-systemd
	$(GO) run ./cmd/skiff-bench boot -skiff bin/skiff -minimal $(IMAGE_OUT) -systemd $(CURDIR)/images/out/$(ARCH)-systemd

clean:
	rm -rf bin images/out

# Fresh machine to a running container: dependencies (with the CLI building alongside),
# the image (cached), `make install`, the default machine, docker run. Each phase is timed.
up:
	MAKE='$(MAKE)' PREFIX='$(PREFIX)' installer/dev/up.sh

# The CLI on PATH, with shell completion for bash, zsh and fish. PREFIX=/usr/local by
# default (the .deb installs to /usr); DESTDIR stages it elsewhere.
PREFIX ?= /usr/local
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
	  $(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 0755 bin/skiff $(DESTDIR)$(PREFIX)/bin/skiff
	bin/skiff completion bash >$(DESTDIR)$(PREFIX)/share/bash-completion/completions/skiff
	bin/skiff completion zsh >$(DESTDIR)$(PREFIX)/share/zsh/site-functions/_skiff
	bin/skiff completion fish >$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/skiff.fish

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/skiff $(DESTDIR)$(PREFIX)/share/bash-completion/completions/skiff \
	  $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_skiff $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/skiff.fish

bench-api: build image
	$(GO) run ./cmd/skiff-bench api -skiff bin/skiff -image $(IMAGE_OUT)

# docker buildx build of a 100 MiB context through Skiff's socket against an ssh-forwarded
# socket to the same VM (the podman machine and Lima path). Needs the buildx plugin
# (installer/dev/deps.sh).
bench-build: build image
	$(GO) run ./cmd/skiff-bench build -skiff bin/skiff -image $(IMAGE_OUT)

bench-idle: build image
	$(GO) run ./cmd/skiff-bench idle -skiff bin/skiff -image $(IMAGE_OUT)

bench-ports: build image
	$(GO) run ./cmd/skiff-bench ports -skiff bin/skiff -image $(IMAGE_OUT)

# Warm start (resume from the saved state) against a cold boot of the same machine: until
# `start` returns, the engine answers, and a container's published port answers.
bench-warm: build image
	$(GO) run ./cmd/skiff-bench warm -skiff bin/skiff -image $(IMAGE_OUT)

# The VM's memory on the host through idle, a 1.2 GB workload, its exit and another:
# free page reporting, the balloon policy (vz's way) and neither, side by side.
bench-memory: build image
	$(GO) run ./cmd/skiff-bench memory -skiff bin/skiff -image $(IMAGE_OUT)

# The transport over vsock (vsock_loopback in the guest) against the network path.
bench-vsock: build image
	$(GO) run ./cmd/skiff-bench vsock -skiff bin/skiff -image $(IMAGE_OUT)

# Needs the host's SFTP server for the sshfs peer: apt-get install openssh-sftp-server.
bench-shares: build image
	$(GO) run ./cmd/skiff-bench shares -skiff bin/skiff -image $(IMAGE_OUT)

# The fault, load and bad-input suite on real VMs, with its figures: kill -9 of the host
# agent, of QEMU and of the guest engine (crashed, then a start that keeps everything),
# a full data disk, 1,000 concurrent API requests, 100 parallel port streams, logs -f and
# events held 10 minutes, and the CLI's refusals. CI runs the same tests with a 30 s hold.
test-faults: build image
	mkdir -p artifacts; set -o pipefail; SKIFF_E2E=1 SKIFF_FAULT_HOLD=$${SKIFF_FAULT_HOLD:-10m} $(GO) test -count=1 -v -p 1 -timeout 60m \
		-run 'TestLifecycle|TestDiskFull|TestBadInput|TestAPILoad|TestPortStreamsLoad|TestLongStreams' ./machine/e2e/ ./forward/e2e/ \
		| tee $(CURDIR)/artifacts/faults.log | grep -E '^(--- |ok|FAIL)|figure:'

# govulncheck against an offline vulnerability database (the golang.org/x/vulndb module from
# the Go module proxy, indexed once and cached under /var/cache/skiff; SKIFF_CACHE overrides)
# for linux, windows and darwin: fails on a vulnerability the code can reach.
.PHONY: vulncheck
vulncheck:
	.ci/vulncheck.sh

# A release in dist/, servable as it is from RELEASE_URL (a GitHub release by default):
# make release VERSION=1.2.3 [RELEASE_URL=...] (installer/release/build.sh says what is in it).
RELEASE_URL ?= https://github.com/skiff-dev/skiff/releases/download/v$(VERSION)
.PHONY: release
release:
	installer/release/build.sh $(VERSION) $(RELEASE_URL) $(CURDIR)/dist
