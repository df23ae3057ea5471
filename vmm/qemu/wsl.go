package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/qemu/internal/wslinit"
	"github.com/skiff-dev/skiff/vmm/wsl2"
)

// WSLStandIn is backend qemu-wsl: the image's WSL root filesystem (wsl-rootfs.tar) and
// `skiff-agent boot-wsl`, booted on QEMU under a stand-in for WSL's init
// (internal/wslinit), so that what the wsl2 backend hands Windows runs here byte for
// byte. The machine's data disk plays the distro's ext4 disk: formatted here as
// `wsl --import` makes it, and filled from the tar by the stand-in on its first boot.
// The stand-in's NIC on Skiff's network is "WSL's own network" (--network wsl); the host
// reaches the agent over it, as on QEMU without vsock. Like WSL it has no warm start.
type WSLStandIn struct {
	// QEMU runs the VM; nil is the default backend.
	QEMU *Backend
	// Init is the stand-in's static init binary; default: $SKIFF_WSL_INIT, else
	// skiff-wslinit next to this program (make builds it there).
	Init string
}

// WSLStandInInitName is the stand-in init's file name next to the skiff binary.
const WSLStandInInitName = "skiff-wslinit"

// wslTarSerial is the read-only disk that carries wsl-rootfs.tar into the stand-in.
const wslTarSerial = "skiff-wsl-tar"

// wslDistroMarker in the machine directory says its data disk holds the distro.
const wslDistroMarker = "wsl-standin-distro"

// Name implements vmm.Backend.
func (b *WSLStandIn) Name() string { return "qemu-wsl" }

// ShareType implements vmm.ShareKind. WSL's drvfs does not exist here: the stand-in's
// shares are QEMU's virtio-9p, a device like drvfs's and not a stream of the agent.
func (b *WSLStandIn) ShareType() string { return "9p" }

func (b *WSLStandIn) qemu() *Backend {
	if b.QEMU == nil {
		return &Backend{}
	}
	return b.QEMU
}

func (b *WSLStandIn) init() string {
	if b.Init != "" {
		return b.Init
	}
	if p := os.Getenv("SKIFF_WSL_INIT"); p != "" {
		return p
	}
	exe, _ := os.Executable()
	return filepath.Join(filepath.Dir(exe), WSLStandInInitName)
}

// Check implements vmm.Backend.
func (b *WSLStandIn) Check(ctx context.Context) error {
	if err := b.qemu().Check(ctx); err != nil {
		return err
	}
	if _, err := os.Stat(b.init()); err != nil {
		return fmt.Errorf("qemu-wsl: the WSL stand-in's init is missing (%w): build it with `CGO_ENABLED=0 go build -o %s ./vmm/qemu/internal/wslinit/skiff-wslinit` or set SKIFF_WSL_INIT", err, b.init())
	}
	return nil
}

// wslRootfs is the image's WSL root filesystem, next to its kernel as vmm/wsl2 expects.
func wslRootfs(cfg vmm.Config) string {
	return filepath.Join(filepath.Dir(cfg.Kernel), wsl2.RootfsName)
}

// ImageRoles implements vmm.ImageChecker.
func (b *WSLStandIn) ImageRoles() []string { return []string{images.RoleWSLRootfs} }

// CheckImageDir implements vmm.ImageChecker: the image in dir must have WSL's root
// filesystem.
func (b *WSLStandIn) CheckImageDir(dir string) error {
	return vmm.CheckImageFile(filepath.Join(dir, wsl2.RootfsName), wsl2.RootfsWhat)
}

// Start implements vmm.Backend.
func (b *WSLStandIn) Start(ctx context.Context, cfg vmm.Config) (vmm.VM, error) {
	if err := vmm.CheckImage(cfg); err != nil {
		return nil, fmt.Errorf("qemu-wsl: %w", err)
	}
	tar := wslRootfs(cfg)
	if err := b.CheckImageDir(filepath.Dir(tar)); err != nil {
		return nil, fmt.Errorf("qemu-wsl: %w", err)
	}
	if err := b.Check(ctx); err != nil {
		return nil, err
	}
	sc, err := standInConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := b.Prepare(ctx, cfg); err != nil {
		return nil, err
	}
	initrd := filepath.Join(cfg.Dir, "wsl-standin-initrd.img")
	if err := writeStandInInitrd(initrd, cfg.Initrd, b.init(), sc); err != nil {
		return nil, fmt.Errorf("qemu-wsl: %w", err)
	}
	vm, err := b.qemu().launch(ctx, standInVMConfig(cfg, initrd, tar), launchOptions{})
	if err != nil {
		return nil, err
	}
	return wslVM{vm}, nil
}

// standInConfig is what the stand-in is told: the agent's command exactly as the wsl2
// backend has wsl.exe run it, with the seed where a Windows host's machine directory
// would put it.
func standInConfig(cfg vmm.Config) (wslinit.Config, error) {
	seedPath, err := wsl2.GuestPath(`C:\skiff\` + cfg.Name + `\seed.img`)
	if err != nil {
		return wslinit.Config{}, fmt.Errorf("qemu-wsl: %w", err)
	}
	return wslinit.Config{
		Command:      wsl2.AgentCommand(seedPath, wsl2.NetworkWSL),
		DistroSerial: "skiff-data", TarSerial: wslTarSerial, SeedSerial: wsl2.SeedSerial,
		SeedPath: seedPath,
	}, nil
}

// standInVMConfig is cfg with the stand-in's initrd and the tar in place of the root disk.
func standInVMConfig(cfg vmm.Config, initrd, tar string) vmm.Config {
	c := cfg
	c.Initrd = initrd
	c.Disks = nil
	for _, d := range cfg.Disks {
		if d.Serial == "skiff-root" {
			d = vmm.Disk{Path: tar, Serial: wslTarSerial, ReadOnly: true}
		}
		c.Disks = append(c.Disks, d)
	}
	return c
}

// Prepare implements vmm.Preparer, the stand-in's `wsl --import`: the data disk is
// formatted as the distro's ext4 disk, once per machine; the stand-in fills it from the
// tar on its first boot.
func (b *WSLStandIn) Prepare(ctx context.Context, cfg vmm.Config) error {
	marker := filepath.Join(cfg.Dir, wslDistroMarker)
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	var disk string
	for _, d := range cfg.Disks {
		if d.Serial == "skiff-data" {
			disk = d.Path
		}
	}
	if disk == "" {
		return fmt.Errorf("qemu-wsl: the machine has no data disk to hold the distro")
	}
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "skiff-wsl", "-E", "lazy_itable_init=1,lazy_journal_init=1", disk).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-wsl: format the distro's disk (e2fsprogs' mkfs.ext4): %w: %s", err, strings.TrimSpace(string(out)))
	}
	return os.WriteFile(marker, []byte("skiff-"+cfg.Name+"\n"), 0o600)
}

// writeStandInInitrd is the image's initrd (its modules and their load list) followed by
// a second archive whose /init, the stand-in, replaces the agent's, and its Config.
func writeStandInInitrd(dst, imageInitrd, init string, sc wslinit.Config) error {
	j, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	bin, err := os.ReadFile(init)
	if err != nil {
		return fmt.Errorf("the WSL stand-in's init: %w", err)
	}
	src, err := os.Open(imageInitrd)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := dst + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, src)
	if err == nil {
		err = writeCpio(f, []cpioFile{{"init", 0o100755, bin}, {strings.TrimPrefix(wslinit.ConfigPath, "/"), 0o100644, j}})
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

type cpioFile struct {
	name string
	mode uint32
	data []byte
}

// writeCpio writes files as a newc archive, the format the kernel unpacks an initrd from.
// Its first header is 4-byte aligned after any archive of whole 512-byte blocks.
func writeCpio(w io.Writer, files []cpioFile) error {
	entry := func(ino int, f cpioFile, nlink int) error {
		name := f.name + "\x00"
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, f.mode, 0, 0, nlink, 0, len(f.data), 0, 0, 0, 0, len(name), 0)
		b := append([]byte(hdr+name), make([]byte, pad4(len(hdr)+len(name)))...)
		b = append(append(b, f.data...), make([]byte, pad4(len(f.data)))...)
		_, err := w.Write(b)
		return err
	}
	for i, f := range files {
		if err := entry(0x5f000+i, f, 1); err != nil {
			return err
		}
	}
	return entry(0, cpioFile{name: "TRAILER!!!"}, 1)
}

func pad4(n int) int { return (4 - n%4) % 4 }

// wslVM is the stand-in's QEMU VM with only what WSL offers: no suspend, no snapshot.
type wslVM struct{ vm *VM }

func (v wslVM) Wait(ctx context.Context) error { return v.vm.Wait(ctx) }
func (v wslVM) Kill(ctx context.Context) error { return v.vm.Kill(ctx) }

// PID implements vmm.ProcessVM.
func (v wslVM) PID() int { return v.vm.PID() }

// Describe implements vmm.Describer.
func (v wslVM) Describe() map[string]string {
	d := v.vm.Describe()
	d["boot"] = "WSL stand-in (" + wsl2.RootfsName + ", boot-wsl --network wsl)"
	return d
}

var (
	_ vmm.Backend      = (*WSLStandIn)(nil)
	_ vmm.ShareKind    = (*WSLStandIn)(nil)
	_ vmm.Preparer     = (*WSLStandIn)(nil)
	_ vmm.ImageChecker = (*WSLStandIn)(nil)
	_ vmm.ProcessVM    = wslVM{}
	_ vmm.Describer    = wslVM{}
)
