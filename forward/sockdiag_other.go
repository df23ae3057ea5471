//go:build !linux

package forward

// scanTables reads the /proc tables; only a Linux guest has either.
func scanTables() []Listener { return scanProcNet() }
