package machine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/skiff-dev/skiff/machine/atomicfile"
	"github.com/skiff-dev/skiff/vmm"
)

// Saved VM state of a suspended machine: a directory the backend fills, plus the record
// below, written last, so a half-written state is never restored.
const (
	DirSavedState   = "suspended"
	dirSavingState  = "suspended.tmp"
	dirRetiredState = "suspended.old"
	fileSavedRecord = "skiff-state.json"
)

// SavedState records what a saved VM state belongs to. It is restored only if all of it
// still matches: the VM (Key), the guest's settings, and every disk file, untouched.
type SavedState struct {
	SavedAt  time.Time   `json:"savedAt"`
	Key      string      `json:"key"`
	Settings string      `json:"settings"`
	Disks    []FilePrint `json:"disks"`
	// Forwards is what the host agent forwarded when the VM was saved, in its own form: a
	// warm start binds those host ports again before the restored guest has been asked.
	Forwards json.RawMessage `json:"forwards,omitempty"`
}

// FilePrint identifies a file's content without reading it. The change time is set by
// the kernel on every write and cannot be set back by tools like touch.
type FilePrint struct {
	Path       string `json:"path"`
	Size       int64  `json:"size"`
	ModNano    int64  `json:"modNano"`
	ChangeNano int64  `json:"changeNano,omitempty"`
	Inode      uint64 `json:"inode,omitempty"`
}

// Fingerprint takes a file's print now.
func Fingerprint(path string) (FilePrint, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return FilePrint{}, err
	}
	p := FilePrint{Path: path, Size: fi.Size(), ModNano: fi.ModTime().UnixNano()}
	p.ChangeNano, p.Inode = fileIdentity(fi)
	return p, nil
}

// Mismatch says why the disks now differ from the saved prints, or "" if they do not.
func (s *SavedState) Mismatch() string {
	for _, want := range s.Disks {
		got, err := Fingerprint(want.Path)
		switch {
		case err != nil:
			return fmt.Sprintf("%s: %v", want.Path, err)
		case got != want:
			return fmt.Sprintf("%s changed after the suspend (modified outside Skiff)", want.Path)
		}
	}
	return ""
}

// SavingStateDir returns an empty directory for a backend to save a state into.
func (d Dir) SavingStateDir() (string, error) {
	p := d.File(dirSavingState)
	if err := os.RemoveAll(p); err != nil {
		return "", err
	}
	return p, os.Mkdir(p, 0o700)
}

// CommitSavedState records s in the directory being saved and makes it the machine's
// saved state, replacing any older one.
func (d Dir) CommitSavedState(s *SavedState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := d.File(dirSavingState)
	if err := atomicfile.Write(filepath.Join(tmp, fileSavedRecord), b, 0o600); err != nil {
		return err
	}
	// The state on disk before its name: a crash must not leave a saved state whose
	// memory image is half written under the name a start trusts.
	if err := atomicfile.SyncFiles(tmp); err != nil {
		return err
	}
	if err := os.RemoveAll(d.File(DirSavedState)); err != nil {
		return err
	}
	if err := os.Rename(tmp, d.File(DirSavedState)); err != nil {
		return err
	}
	return atomicfile.SyncDir(d.Path)
}

// ReadSavedState returns the machine's saved state, or nil when it has none.
func (d Dir) ReadSavedState() (*SavedState, error) {
	b, err := os.ReadFile(filepath.Join(d.File(DirSavedState), fileSavedRecord))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s SavedState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("saved state record: %w", err)
	}
	return &s, nil
}

// DiscardSavedState removes the saved state and any half-saved one.
func (d Dir) DiscardSavedState() error {
	return errors.Join(os.RemoveAll(d.File(DirSavedState)), os.RemoveAll(d.File(dirSavingState)), os.RemoveAll(d.File(dirRetiredState)))
}

// RetireSavedState takes a restored state out of use at once and deletes it in the
// background: dropping hundreds of MiB of cached pages takes longer than the restore.
func (d Dir) RetireSavedState() error {
	old := d.File(dirRetiredState)
	os.RemoveAll(old)
	if err := os.Rename(d.File(DirSavedState), old); err != nil {
		return err
	}
	go os.RemoveAll(old)
	return nil
}

// SavedStateInfo is what inspect shows of a saved state.
type SavedStateInfo struct {
	SavedAt   time.Time `json:"savedAt"`
	SizeBytes int64     `json:"sizeBytes"`
	Path      string    `json:"path"`
}

// SavedStateInfo describes the saved state now, or returns nil when there is none.
func (d Dir) SavedStateInfo() *SavedStateInfo {
	s, err := d.ReadSavedState()
	if err != nil || s == nil {
		return nil
	}
	size, _ := vmm.StateSize(d.File(DirSavedState))
	return &SavedStateInfo{SavedAt: s.SavedAt, SizeBytes: size, Path: d.File(DirSavedState)}
}
