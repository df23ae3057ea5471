package main

import "github.com/skiff-dev/skiff/vmm"

// imageChecker is the backend's vmm.ImageChecker: what `machine init` installs of an
// image beyond its kernel, initrd and root, and whether the backend can boot the result,
// asked before the machine exists. nil for a backend that boots those three alone, and
// for one this host cannot make (it fails at start, as before).
func imageChecker(backend string) vmm.ImageChecker {
	b, err := backendFor(backend)
	if err != nil {
		return nil
	}
	c, _ := b.(vmm.ImageChecker)
	return c
}
