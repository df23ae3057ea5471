package main

import "github.com/skiff-dev/skiff/vmm"

// checkImageFor fails `machine init` when backend cannot boot the installed image in dir
// (vmm.ImageChecker: an image without the Hyper-V boot disk or WSL's root filesystem),
// before the machine exists. A backend this host cannot make is left to fail at start,
// as it did before.
func checkImageFor(backend, dir string) error {
	b, err := backendFor(backend)
	if err != nil {
		return nil
	}
	if c, ok := b.(vmm.ImageChecker); ok {
		return c.CheckImageDir(dir)
	}
	return nil
}
