//go:build linux

// Package e2e holds the machine lifecycle end-to-end tests: real VMs under QEMU, driven
// through the skiff CLI, checked with the real docker CLI. Run with SKIFF_E2E=1.
package e2e
