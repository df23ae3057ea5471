// Package fsevents carries host file changes to inotify watchers in the guest. The host
// agent watches (with fsnotify) only the share folders the guest says its processes
// watch, coalesces what changes there and sends the changed paths; the guest agent
// compares each with what it knew and makes its own kernel report the change on the
// share's mount by doing a harmless operation there (see emit_linux.go for what each
// change becomes and why).
//
// One stream per machine, host to guest, JSON lines both ways: the host first sends the
// shares to follow, then batches of changes; the guest sends the directories watched in
// each share whenever that set changes.
package fsevents

import (
	"context"
	"encoding/json"

	"github.com/skiff-dev/skiff/forward"
)

// Service is the guest agent's transport service for file events.
const Service = forward.ServiceFileEvents

// Share is a share the host follows: its tag, where the guest mounts it, and how
// ("9p", "9p-transport" or "virtiofs").
type Share struct {
	Tag       string `json:"tag"`
	GuestPath string `json:"guestPath"`
	Type      string `json:"type"`
}

// Change is one path of a share that changed on the host: slash-separated, relative to
// the share's root ("" is the root). Rescan asks the guest to compare the whole
// directory, which the host sends instead of its entries when a burst has too many.
type Change struct {
	Share  string `json:"share"`
	Path   string `json:"path"`
	Rescan bool   `json:"rescan,omitempty"`
}

// Watch is the set of directories of a share that guest processes watch, in full.
type Watch struct {
	Share string   `json:"share"`
	Dirs  []string `json:"dirs"`
}

// Message is one line on the stream. Host to guest: Shares once, then Changes. Guest to
// host: Watches, each a share's whole set.
type Message struct {
	Shares  []Share  `json:"shares,omitempty"`
	Changes []Change `json:"changes,omitempty"`
	Watches []Watch  `json:"watches,omitempty"`
}

// readMessages decodes the peer's messages onto msgs until decoding fails (the error
// goes on errs) or ctx ends, so that a session's loop can select on them.
func readMessages(ctx context.Context, dec *json.Decoder) (msgs <-chan Message, errs <-chan error) {
	m, e := make(chan Message), make(chan error, 1)
	go func() {
		for {
			var msg Message
			if err := dec.Decode(&msg); err != nil {
				e <- err
				return
			}
			select {
			case m <- msg:
			case <-ctx.Done():
				e <- ctx.Err()
				return
			}
		}
	}()
	return m, e
}
