//go:build linux

package main

import (
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/forward/fsevents"
	"github.com/skiff-dev/skiff/images/seed"
)

// fileEvents is the guest end of host file events, limited to the seed's writable 9p and
// virtiofs shares, and only while they are mounted (not the empty folder beneath).
func fileEvents(sd *seed.Seed) *fsevents.Guest {
	return fsevents.NewGuest(fsevents.GuestOptions{Logf: logf, Mounted: func(p string) bool {
		for _, sh := range sd.Shares {
			switch sh.Type {
			case "9p", "virtiofs", "9p-transport":
				if sh.GuestPath == p && !sh.ReadOnly {
					var st, up unix.Stat_t
					return unix.Stat(p, &st) == nil && unix.Stat(filepath.Dir(p), &up) == nil && st.Dev != up.Dev
				}
			}
		}
		return false
	}})
}
