package vmm

import "testing"

func TestWithConsole(t *testing.T) {
	for in, want := range map[string]string{
		"console=ttyAMA0 quiet panic=-1":     "console=hvc0 quiet panic=-1",
		"quiet console=ttyS0 console=tty0 x": "console=hvc0 quiet x",
		"quiet":                              "console=hvc0 quiet",
		"":                                   "console=hvc0",
	} {
		if got := WithConsole(in, "hvc0"); got != want {
			t.Errorf("WithConsole(%q) = %q, want %q", in, got, want)
		}
	}
}
