package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBadInput runs the CLI in-process: each refusal is one line, and its exit status
// says its class.
func TestBadInput(t *testing.T) {
	t.Setenv("SKIFF_HOME", t.TempDir())
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"machine", "inspect", "nosuch"}, 3, `machine "nosuch" does not exist`},
		{[]string{"machine", "rm", "nosuch"}, 3, "skiff machine init nosuch"},
		{[]string{"machine", "start", "Bad Name"}, 2, "invalid machine name"},
		{[]string{"machine", "list", "--bogus"}, 2, "unknown flag"},
		{[]string{"machine", "init", "x", "--memory", "12Q"}, 2, "--memory"},
		{[]string{"machine", "init", "x", "--backend", "nonsense"}, 2, `backend "nonsense" is not available`},
		{[]string{"machine", "ssh", "a", "b"}, 2, "put the command after --"},
		{[]string{"machine", "list", "--format", "{{.Nope"}, 2, "--format"},
	} {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		msg := errb.String()
		if code != c.code || !strings.Contains(msg, c.want) || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
			t.Errorf("skiff %s: exit %d, stderr %q; want exit %d and one line with %q", strings.Join(c.args, " "), code, msg, c.code, c.want)
		}
	}
}

func TestListEmpty(t *testing.T) {
	t.Setenv("SKIFF_HOME", t.TempDir())
	var out, errb bytes.Buffer
	if code := run([]string{"machine", "list", "--format", "json"}, &out, &errb); code != 0 || strings.TrimSpace(out.String()) != "[]" {
		t.Fatalf("list of an empty home: exit %d, %q %q", code, out.String(), errb.String())
	}
}
