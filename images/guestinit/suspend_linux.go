package guestinit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/images/seed"
)

// The fsfreeze ioctls, _IOWR('X', 119/120, int); x/sys/unix does not define them.
const (
	ioctlFIFREEZE = 0xC0045877
	ioctlFITHAW   = 0xC0045878
)

// Quiesce readies the guest for a VM suspend. Shares are unmounted: QEMU refuses to save
// while a 9p export is mounted, and a transport share's stream dies with the host agent.
// The data filesystem is frozen, which writes it out whole and marks it clean, so that a
// saved state that is later thrown away leaves a disk that needs no recovery.
func (s *System) Quiesce() error {
	unix.Sync()
	var unmounted []seed.Share
	for _, sh := range s.Seed.Shares {
		if !isMountPoint(sh.GuestPath) {
			continue
		}
		dev, err := devOf(sh.GuestPath)
		if err == nil {
			err = unix.Unmount(sh.GuestPath, 0)
		}
		if err == nil {
			unmounted = append(unmounted, sh)
			err = heldElsewhere(dev)
		}
		if err != nil {
			s.remount(unmounted)
			return fmt.Errorf("share %s is in use in the guest (%w); the machine cannot be suspended while it is", sh.GuestPath, err)
		}
	}
	if err := fsIoctl(DataMount, ioctlFIFREEZE); err != nil {
		s.remount(unmounted)
		return fmt.Errorf("freeze the data disk: %w", err)
	}
	s.mu.Lock()
	s.suspendedShares = unmounted
	s.mu.Unlock()
	return nil
}

// Resume picks up after a restore, or after a suspend that failed: the clock first, since
// everything after it wants the right time, then the disk and the shares.
func (s *System) Resume(now time.Time) (time.Duration, error) {
	drift := SetClock(now, s.Log)
	var errs []error
	if err := fsIoctl(DataMount, ioctlFITHAW); err != nil && !errors.Is(err, unix.EINVAL) {
		errs = append(errs, fmt.Errorf("thaw the data disk: %w", err))
	}
	s.mu.Lock()
	shares := s.suspendedShares
	s.suspendedShares = nil
	s.mu.Unlock()
	errs = append(errs, s.remount(shares))
	return drift, errors.Join(errs...)
}

func (s *System) remount(shares []seed.Share) error {
	var errs []error
	for _, sh := range shares {
		if err := s.MountShare(sh); err != nil {
			errs = append(errs, fmt.Errorf("share %s: %w", sh.GuestPath, err))
		}
	}
	return errors.Join(errs...)
}

func fsIoctl(path string, req uint) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.IoctlSetInt(int(f.Fd()), req, 0)
}

// isMountPoint compares the device of path and its parent.
func isMountPoint(path string) bool {
	var a, b unix.Stat_t
	if unix.Stat(path, &a) != nil || unix.Stat(path+"/..", &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

// heldElsewhere says where the file system dev is still mounted after its unmount in the
// guest's own namespace: a container's bind mount of a share is not unmounted with it,
// and a transport share's stream would die under it.
func heldElsewhere(dev string) error {
	h, err := mountedElsewhere("/proc", dev)
	if h != nil {
		return errors.New(describeHolder(h))
	}
	return err
}

// describeHolder says where a share is still mounted, naming the container that holds it
// (what the user can stop), as the engine knows it.
func describeHolder(h *holder) string {
	by := fmt.Sprintf("process %s (%s)", h.pid, h.comm)
	if h.container != "" {
		name := h.container[:12]
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if c, err := engineClient(); err == nil {
			if r, err := c.ContainerInspect(ctx, h.container, client.ContainerInspectOptions{}); err == nil {
				name = strings.TrimPrefix(r.Container.Name, "/") + " (" + name + ")"
			}
			c.Close()
		}
		by = "container " + name + ", " + by
	}
	return fmt.Sprintf("mounted at %s by %s", h.point, by)
}
