package winpipe

import (
	"errors"
	"runtime"
	"testing"
)

func TestSDDL(t *testing.T) {
	got, err := SDDL("S-1-5-21-1004336348-1177238915-682003330-1001")
	if err != nil {
		t.Fatal(err)
	}
	if want := "D:P(A;;GA;;;S-1-5-21-1004336348-1177238915-682003330-1001)"; got != want {
		t.Fatalf("SDDL = %s, want %s", got, want)
	}
	// Anything but a SID could widen the DACL (an SDDL alias like WD is Everyone).
	for _, bad := range []string{"", "WD", "BU", "S-1-5-21-1)(A;;GA;;;WD", "S-1-", "s-1-5-18"} {
		if _, err := SDDL(bad); err == nil {
			t.Errorf("SDDL(%q) accepted", bad)
		}
	}
}

func TestNonWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has named pipes")
	}
	l, err := Listen(`\\.\pipe\docker_engine`)
	if l != nil || !errors.Is(err, ErrWindowsOnly) || err.Error() != `winpipe: listen on \\.\pipe\docker_engine: named pipes are Windows only` {
		t.Fatalf("Listen = %v, %v", l, err)
	}
	if Free(`\\.\pipe\docker_engine`) {
		t.Fatal("Free reported a pipe claimable off Windows")
	}
}
