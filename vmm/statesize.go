package vmm

import (
	"io/fs"
	"path/filepath"
)

// StateSize is the disk space a saved state directory takes: its files are sparse, so
// this counts allocated blocks where the OS reports them, not file lengths.
func StateSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += allocated(fi)
		return nil
	})
	return total, err
}
