package hostagent

import (
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward"
)

// The guest's steps run side by side, so the stream is what the longest leaves.
func TestWithStream(t *testing.T) {
	guest := []forward.Step{stepOf("clock, disk and shares", 40*time.Millisecond), stepOf("engine answer", 100*time.Millisecond)}
	steps := withStream(250*time.Millisecond, guest)
	if len(guest) != 2 {
		t.Fatalf("the guest's steps were changed: %v", guest)
	}
	if got, want := forward.StepsText(steps), "clock, disk and shares 40ms, engine answer 100ms, stream and round trip 150ms"; got != want {
		t.Fatalf("StepsText = %q, want %q", got, want)
	}
}
