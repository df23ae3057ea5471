package main

import (
	"strings"
	"testing"
)

// A hist trigger's output, as the guest kernel prints it, becomes counts by request name.
func TestParse9pHist(t *testing.T) {
	hist := `# event histogram
#
# trigger info: hist:keys=type:vals=hitcount:sort=hitcount:size=2048 [active]
#

{ type:         40 } hitcount:          3
{ type:        120 } hitcount:      10001
{ type:        110 } hitcount:      10002
{ type:         24 } hitcount:      20004
{ type:         99 } hitcount:          1

Totals:
    Hits: 40011
    Entries: 5
    Dropped: 0
`
	m := parse9pHist(hist)
	want := map[string]int{"readdir": 3, "clunk": 10001, "walk": 10002, "getattr": 20004, "T99": 1}
	if len(m) != len(want) {
		t.Fatalf("got %v, want %v", m, want)
	}
	for k, n := range want {
		if m[k] != n {
			t.Fatalf("got %v, want %v", m, want)
		}
	}
	b := fsResult{statSec: 4.0011, listSec: 0.5, msgs: m}.breakdown()
	for _, s := range []string{"list 0.50s", "getattr 2.00", "walk 1.00", "= 4.00 requests", "100us each"} {
		if !strings.Contains(b, s) {
			t.Errorf("breakdown %q lacks %q", b, s)
		}
	}
}
