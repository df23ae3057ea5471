//go:build !unix && !windows

package images

import "os"

// tryLock: no file locks here; unique partial folders and the atomic rename still keep
// concurrent installs apart.
func tryLock(*os.File) (bool, error) { return false, nil }

func recordTrusted(os.FileInfo) bool { return false }
