package hostagent

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// residentFile is this process's file-backed resident memory (RssFile), in kB.
func residentFile(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestTrimResident(t *testing.T) {
	before := residentFile(t)
	n, err := trimResident()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("found none of this program's code in /proc/self/maps")
	}
	after := residentFile(t)
	t.Logf("file-backed resident memory: %d kB before, %d kB after (%d kB unmapped)", before, after, n>>10)
	if after >= before {
		t.Fatalf("resident file pages did not shrink: %d kB before, %d kB after", before, after)
	}
	// The program runs on: its code faults back in as used.
	if _, err := trimResident(); err != nil {
		t.Fatal(err)
	}
}
