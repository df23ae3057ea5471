package vmm

import "io/fs"

// allocated is the length on Windows, where saved states are not sparse files.
func allocated(fi fs.FileInfo) int64 { return fi.Size() }
