package guestinit

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestReaperRunOutput checks that Run returns a command's whole output, however soon the
// command exits after writing it: the runc probes' records were once cut short because
// Run returned before os/exec's copy of the output had finished.
func TestReaperRunOutput(t *testing.T) {
	// The reaper waits for every child of the process, which would take other tests'
	// children from them; so it runs in a process of its own.
	if os.Getenv("SKIFF_TEST_REAPER") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReaperRunOutput$", "-test.v")
		cmd.Env = append(os.Environ(), "SKIFF_TEST_REAPER=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS") {
			t.Fatalf("the reaper's test process: %v\n%s", err, out)
		}
		return
	}
	r := NewReaper()
	const size = 1 << 20
	for i := 0; i < 20; i++ {
		var out, both strings.Builder
		cmd := exec.Command("sh", "-c", "head -c 1048576 /dev/zero; echo end; echo err >&2; exit 3")
		cmd.Stdout = &out
		cmd.Stderr = &both
		ws, err := r.Run(cmd)
		if err != nil || ws.ExitStatus() != 3 {
			t.Fatalf("run: %v, exit %d; want exit 3", err, ws.ExitStatus())
		}
		if out.Len() != size+4 || !strings.HasSuffix(out.String(), "end\n") || both.String() != "err\n" {
			t.Fatalf("run %d: stdout %d bytes (want %d, ending in end), stderr %q (want err)", i, out.Len(), size+4, both.String())
		}

		// One writer for both streams gets both, in the order they were written.
		both.Reset()
		cmd = exec.Command("sh", "-c", "echo one; echo two >&2; echo three")
		cmd.Stdout, cmd.Stderr = &both, &both
		if _, err := r.Run(cmd); err != nil || both.String() != "one\ntwo\nthree\n" {
			t.Fatalf("combined output: %q, %v; want one, two, three", both.String(), err)
		}
	}
	if _, err := r.Run(exec.Command("/nonexistent/program")); err == nil {
		t.Fatal("running a program that does not exist succeeded")
	}
}
