package machine

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// ErrLocked means another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// Lock is an advisory whole-file lock. The OS drops it when the holder dies, so a crash
// never leaves a machine locked.
type Lock struct{ f *os.File }

// TryLock takes the lock at path without waiting.
func TryLock(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, ErrLocked) {
			return nil, err
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// TryLockFor takes the lock at path, waiting up to d while someone else holds it: status
// probes (Held) take the agent's lock for an instant, which must not make an agent that
// starts at that instant give up.
func TryLockFor(path string, d time.Duration) (*Lock, error) {
	deadline := time.Now().Add(d)
	for {
		l, err := TryLock(path)
		if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
			return l, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unlockFile(l.f)
	l.f.Close()
	l.f = nil
	return err
}

// Held reports whether some process holds the lock at path, without keeping it.
func Held(path string) bool {
	l, err := TryLock(path)
	if err != nil {
		return errors.Is(err, ErrLocked)
	}
	l.Unlock()
	return false
}
