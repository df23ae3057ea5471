//go:build !linux

package main

import "errors"

func benchMemory([]string) error {
	return errors.New("the memory benchmark follows QEMU's RSS on Linux only")
}

func benchMemoryFill([]string) error {
	return errors.New("the memory workload runs in a Linux container")
}
