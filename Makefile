# Skiff build, image and test entry points. Everything installs what it needs.
SHELL := /bin/bash
GO ?= go
ARCH ?= $(shell $(GO) env GOARCH)
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
IMAGE_OUT := $(CURDIR)/images/out/$(ARCH)
LDFLAGS := -s -w -X main.version=$(VERSION) -X github.com/skiff-dev/skiff/images.DefaultRef=$(IMAGE_OUT)

.PHONY: all build agent image image-systemd test test-unit test-e2e bench-boot cross clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/skiff ./cmd/skiff

# The guest agent is static and goes into the initrd.
agent:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) $(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o bin/skiff-agent-linux-$(ARCH) ./cmd/skiff-agent

# The guest image. The slow rootfs stage is cached by a hash of its recipe
# (under /var/cache/skiff/images, override with SKIFF_IMAGE_CACHE).
image: agent
	images/build.sh $(ARCH) bin/skiff-agent-linux-$(ARCH) $(IMAGE_OUT)

image-systemd: agent
	images/build.sh $(ARCH) bin/skiff-agent-linux-$(ARCH) $(CURDIR)/images/out/$(ARCH)-systemd --variant systemd

test-unit:
	$(GO) test ./...

# The whole suite, as CI runs it: host packages, the image, unit tests, the end-to-end
# tests against real VMs, and the cross-OS checks.
test:
	.ci/test-all

bench-boot: build image image-systemd
	$(GO) run ./images/cmd/bench-boot -minimal $(IMAGE_OUT) -systemd $(CURDIR)/images/out/$(ARCH)-systemd

clean:
	rm -rf bin images/out
