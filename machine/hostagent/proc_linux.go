package hostagent

import (
	"os"
	"strconv"
	"strings"
)

// processIsVM guards against pid reuse before killing a leftover VM.
func processIsVM(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.Contains(string(b), "qemu-system")
}
