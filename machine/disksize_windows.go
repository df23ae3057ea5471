package machine

import "os"

// fileSizes returns the apparent size twice: allocation needs a sparse-file query.
func fileSizes(p string) (int64, int64) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, 0
	}
	return st.Size(), st.Size()
}
