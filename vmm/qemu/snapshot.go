package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/skiff-dev/skiff/vmm"
)

// Files of a saved state directory. With shared RAM, the device state and a sparse copy of
// guest memory; otherwise QEMU's whole migration stream, compressed.
const (
	stateDevice = "device"
	stateRAM    = "ram"
	stateStream = "stream.zst"
)

// StateKey implements vmm.Warm. A migration stream only loads into the same QEMU
// build with the same machine, devices and memory, so the key is the binary's identity
// plus the whole command line.
func (b *Backend) StateKey(ctx context.Context, cfg vmm.Config) (string, error) {
	bin, err := exec.LookPath(b.binary(cfg.Arch))
	if err != nil {
		return "", fmt.Errorf("qemu: %w", err)
	}
	st, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("qemu: %w", err)
	}
	accel, _ := b.ChooseAccel(cfg.Arch, cfg.Kernel)
	netSock, qmpSock, pidFile := paths(cfg)
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00", bin, st.Size(), st.ModTime().UnixNano())
	for _, a := range b.Args(cfg, accel, netSock, qmpSock, pidFile) {
		fmt.Fprintf(h, "%s\x00", a)
	}
	fmt.Fprintf(h, "vsock=%v\x00", b.vsockUsable()) // a device of the saved VM's

	return "qemu-" + hex.EncodeToString(h.Sum(nil))[:32], nil
}

// CanSuspend implements vmm.Warm.
func (b *Backend) CanSuspend(vm vmm.VM) error {
	v, err := ownVM(vm)
	if err != nil {
		return err
	}
	return v.canSuspend()
}

// ownVM is the QEMU VM behind a handle Start or Restore returned.
func ownVM(vm vmm.VM) (*VM, error) {
	if v, ok := vm.(vsockVM); ok {
		return v.VM, nil
	}
	return vmm.Own[*VM]("qemu", vm)
}

// Suspend implements vmm.Warm: it pauses the VM, saves its state into dir and quits QEMU.
// The disks are flushed when the stream completes and untouched afterwards, so the files
// on disk are the ones the state belongs to. On error the VM runs on.
func (b *Backend) Suspend(ctx context.Context, vm vmm.VM, dir string) error {
	v, err := ownVM(vm)
	if err != nil {
		return err
	}
	return v.suspend(ctx, dir)
}

func (v *VM) suspend(ctx context.Context, dir string) (err error) {
	if err := v.canSuspend(); err != nil {
		return err
	}
	q, err := dialQMP(ctx, v.qmp)
	if err != nil {
		return err
	}
	defer q.Close()
	if err := q.run("stop", nil, nil); err != nil {
		return err
	}
	v.suspending.Store(true)
	defer func() {
		if err != nil {
			v.suspending.Store(false)
			if cerr := q.run("cont", nil, nil); cerr != nil {
				err = fmt.Errorf("%w (and the VM did not continue: %v)", err, cerr)
			}
		}
	}()
	// The default bandwidth cap (32 MiB/s) would make a save take seconds per GiB.
	if err := q.run("migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}, nil); err != nil {
		return err
	}
	if v.ram != nil {
		// Memory stays in the memfd we hold; the stream carries devices only.
		if err := q.run("migrate-set-capabilities", ignoreShared, nil); err != nil {
			return err
		}
		err = v.migrateTo(ctx, q, filepath.Join(dir, stateDevice), nil)
	} else {
		err = v.migrateTo(ctx, q, filepath.Join(dir, stateStream), compress)
	}
	if err != nil {
		return fmt.Errorf("qemu: save state: %w", err)
	}
	// The state is complete; QEMU only has to go.
	q.run("quit", nil, nil)
	select {
	case <-v.Done():
	case <-time.After(10 * time.Second):
		v.Kill(ctx)
	}
	if v.ram == nil {
		return nil
	}
	defer v.ram.Close()
	return writeRAM(filepath.Join(dir, stateRAM), v.ram, v.memMiB<<20)
}

var ignoreShared = map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}

// migrateTo runs an outgoing migration into the file at path, through filter when set.
func (v *VM) migrateTo(ctx context.Context, q *qmp, path string, filter func(io.Writer, io.Reader) error) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	out, copied := f, make(chan error, 1)
	if filter != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		defer r.Close()
		defer w.Close()
		go func() { copied <- filter(f, r) }()
		out = w
	} else {
		copied <- nil
	}
	if err := q.sendFD("skiff-save", out); err != nil {
		return err
	}
	// QEMU holds its own copy now; the filter sees EOF once QEMU closes it.
	out.Close()
	if err := q.run("migrate", map[string]any{"uri": "fd:skiff-save"}, nil); err != nil {
		// A migration blocker: QEMU never took the descriptor.
		q.run("closefd", map[string]any{"fdname": "skiff-save"}, nil)
		return err
	}
	if err := errors.Join(q.awaitMigration(ctx), <-copied); err != nil {
		return err
	}
	return syncFile(path)
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func writeRAM(path string, ram *os.File, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := saveRAM(f, ram, size); err != nil {
		return fmt.Errorf("qemu: save guest memory: %w", err)
	}
	return f.Sync()
}

// Restore implements vmm.Warm: QEMU starts with the same command line and loads
// the saved state instead of booting; the guest runs on once it has loaded.
func (b *Backend) Restore(ctx context.Context, cfg vmm.Config, dir string) (vmm.VM, error) {
	if runtime.GOOS == "windows" {
		return nil, fmt.Errorf("qemu: restore on Windows: %w", vmm.ErrNotSupported)
	}
	var opt launchOptions
	var feed func() error
	loaded := make(chan error, 1) // the guest memory, copied while QEMU starts
	if sharedRAM {
		src, err := os.Open(filepath.Join(dir, stateRAM))
		if err != nil {
			return nil, fmt.Errorf("qemu: saved state: %w", err)
		}
		defer src.Close()
		if opt.incoming, err = os.Open(filepath.Join(dir, stateDevice)); err != nil {
			return nil, fmt.Errorf("qemu: saved state: %w", err)
		}
		if opt.ram, err = newRAM(cfg.MemoryMiB); err != nil {
			opt.incoming.Close()
			return nil, err
		}
		// QEMU maps the memory at start but reads none of it before the incoming
		// migration (its ROMs are regions of their own), so the copy runs beside its
		// start-up, which is about as long, instead of before it.
		go func() { loaded <- loadRAM(opt.ram, src, cfg.MemoryMiB<<20) }()
	} else {
		loaded <- nil
		src, err := os.Open(filepath.Join(dir, stateStream))
		if err != nil {
			return nil, fmt.Errorf("qemu: saved state: %w", err)
		}
		defer src.Close()
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		defer w.Close()
		opt.incoming = r
		feed = func() error {
			defer w.Close()
			return decompress(w, src)
		}
	}
	vm, err := b.launch(ctx, cfg, opt)
	opt.incoming.Close()
	lerr := <-loaded
	if err != nil {
		if opt.ram != nil {
			opt.ram.Close()
		}
		return nil, err
	}
	if lerr != nil {
		vm.Kill(context.Background())
		vm.Wait(context.Background())
		return nil, fmt.Errorf("qemu: load guest memory: %w", lerr)
	}
	fed := make(chan error, 1)
	if feed != nil {
		go func() { fed <- feed() }()
	} else {
		fed <- nil
	}
	if err := vm.loadState(ctx); err != nil {
		vm.Kill(context.Background())
		if werr := vm.Wait(context.Background()); werr != nil {
			err = fmt.Errorf("%w: %v", err, werr)
		}
		return nil, fmt.Errorf("qemu: restore: %w", err)
	}
	if err := <-fed; err != nil {
		vm.Kill(context.Background())
		return nil, fmt.Errorf("qemu: restore: %w", err)
	}
	return vm.handle(), nil
}

// DiscardState implements vmm.Warm: QEMU keeps nothing of a saved state outside it.
func (b *Backend) DiscardState(ctx context.Context, cfg vmm.Config) error { return nil }

// DiskFiles implements vmm.Warm: QEMU writes to the disks' own files.
func (b *Backend) DiskFiles(cfg vmm.Config) []string { return cfg.DiskPaths() }

var _ vmm.Warm = (*Backend)(nil)

// loadState starts the deferred incoming migration and waits until the guest runs.
func (v *VM) loadState(ctx context.Context) error {
	q, err := dialQMP(ctx, v.qmp)
	if err != nil {
		return err
	}
	defer q.Close()
	if v.ram != nil {
		if err := q.run("migrate-set-capabilities", ignoreShared, nil); err != nil {
			return err
		}
	}
	if err := q.run("migrate-incoming", map[string]any{"uri": "fd:" + strconv.Itoa(v.incomingFD)}, nil); err != nil {
		return err
	}
	if err := q.awaitMigration(ctx); err != nil {
		return err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := q.run("query-status", nil, &st); err != nil {
		return err
	}
	if st.Status != "running" {
		return q.run("cont", nil, nil)
	}
	return nil
}

func compress(dst io.Writer, src io.Reader) error {
	zw, err := zstd.NewWriter(dst, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(2))
	if err != nil {
		return err
	}
	if _, err := io.Copy(zw, src); err != nil {
		zw.Close()
		return err
	}
	return zw.Close()
}

func decompress(dst io.Writer, src io.Reader) error {
	zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(2))
	if err != nil {
		return err
	}
	defer zr.Close()
	if _, err := io.Copy(dst, zr); err != nil {
		return fmt.Errorf("feed the saved state to QEMU: %w", err)
	}
	return nil
}
