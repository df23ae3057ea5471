package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiff-dev/skiff/vmm"
)

// virtiofs shares: each is served by its own virtiofsd, a vhost-user backend that QEMU
// talks to over a unix socket and that reads and writes guest memory itself, so the
// guest's RAM must be shared (ram_linux.go). The guest caches attributes and directory
// entries (FUSE), which is what makes stat and directory walks several times faster than
// 9p; the price is that QEMU cannot save a VM with one, so such machines boot cold.

const shareVirtiofs = "virtiofs"

// VirtiofsdArgsEnv names arguments appended to every virtiofsd's command line, split on
// whitespace: an opt-in for experiments and benchmarks (cache modes, thread pools).
const VirtiofsdArgsEnv = "SKIFF_VIRTIOFSD_ARGS"

// virtiofsdPaths are where distributions install virtiofsd outside PATH: the Rust one
// (Debian 13, Ubuntu 24.04, Fedora), QEMU's own C one (Debian 12, Ubuntu 22.04), Arch.
var virtiofsdPaths = []string{"/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd", "/usr/lib/virtiofsd"}

// virtiofsd is the host's virtiofsd and the dialect it speaks.
type virtiofsd struct {
	path string
	// rust: the Rust virtiofsd (--shared-dir ...); otherwise QEMU's C one (-o source=...).
	rust bool
	// readOnly: it can refuse writes itself (--readonly); otherwise a read-only share is
	// enforced by a read-only bind mount in a mount namespace of its own.
	readOnly bool
}

var virtiofsdCache sync.Map // path -> virtiofsd

// findVirtiofsd locates virtiofsd and asks it which options it has.
func (b *Backend) findVirtiofsd(ctx context.Context) (virtiofsd, error) {
	candidates := virtiofsdPaths
	if b.Virtiofsd != "" {
		candidates = []string{b.Virtiofsd}
	} else if p, err := exec.LookPath("virtiofsd"); err == nil {
		candidates = append([]string{p}, candidates...)
	}
	for _, p := range candidates {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			continue
		}
		if d, ok := virtiofsdCache.Load(p); ok {
			return d.(virtiofsd), nil
		}
		// --help lists the options of either; how it exits varies between versions.
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		help, err := exec.CommandContext(ctx, p, "--help").CombinedOutput()
		cancel()
		if len(help) == 0 {
			return virtiofsd{}, fmt.Errorf("%s --help: %v", p, err)
		}
		d := virtiofsd{path: p, rust: strings.Contains(string(help), "--shared-dir"), readOnly: strings.Contains(string(help), "--readonly")}
		virtiofsdCache.Store(p, d)
		return d, nil
	}
	return virtiofsd{}, errors.New("virtiofsd not found: install it (Debian 12: apt-get install qemu-system-common; Debian 13 and later: apt-get install virtiofsd) or use --share-type 9p")
}

// Options of every virtiofsd. The guest must never read a file the host has changed as
// it was: cache=auto alone lets the guest keep attributes and entries for a second, and
// in that second a file the host rewrote was seen with its old size (read as its new
// bytes cut at the old size, or padded with zeros to it), and an entry the host replaced
// by a rename still leads to the old inode.
// So the C virtiofsd gets timeout=0: every lookup and stat asks the host, the page cache
// is dropped when a file is opened (cache=auto's close-to-open), and readdirplus, whose
// attributes would expire at once, is off. The Rust virtiofsd keeps cache=auto for now:
// its coherent mode (--cache never, with --allow-mmap for shared mappings) is untried
// here. The guest writes through (no writeback cache), so the host sees its edits
// at once. announce_submounts gives file systems mounted inside a share their own device
// numbers in the guest, as 9p's multidevs=remap does, so inode numbers never collide.
// xattrs stay off: with them the guest asks for security.capability before every write,
// and nothing that bind mounts a host folder needs the host's xattrs.
const virtiofsCache = "auto"

// args is virtiofsd's command line for one share; it serves the vhost-user socket it
// inherits as fd 3. asUser: it runs as fake root in a user namespace.
func (d virtiofsd) args(sh vmm.Share, asUser bool) []string {
	var a []string
	if d.rust {
		a = []string{"--fd=3", "--shared-dir", sh.HostPath, "--cache", virtiofsCache, "--sandbox", "namespace", "--announce-submounts"}
		if sh.ReadOnly && d.readOnly {
			a = append(a, "--readonly")
		}
	} else {
		a = []string{"--fd=3", "-o", "source=" + fuseEscape(sh.HostPath), "-o", "cache=" + virtiofsCache,
			"-o", "sandbox=namespace", "-o", "announce_submounts"}
	}
	if asUser {
		// Raising the descriptor limit past the hard one needs real root.
		a = append(a, "--rlimit-nofile=0")
	}
	if !d.rust {
		a = append(a, "-o", "timeout=0", "-o", "no_readdirplus") // see virtiofsCache
	}
	return append(a, strings.Fields(os.Getenv(VirtiofsdArgsEnv))...)
}

// fuseEscape escapes the separators of the C virtiofsd's -o option lists.
func fuseEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(s)
}

// roBindScript binds $1 read-only onto itself and runs the rest. Not recursively: a
// folder mounted inside a read-only share shows empty rather than writable.
const roBindScript = `mount --bind -o ro -- "$1" "$1" || exit 1; shift; exec "$@"`

// command is the whole command that serves sh. virtiofsd wants to be root (its sandbox
// needs namespaces, and it creates files as the guest's uids): a user runs it as root of
// a user namespace of its own, where the host user's files are root's. A read-only share
// that virtiofsd cannot refuse writes to gets a mount namespace in which the folder is a
// read-only bind; virtiofsd's sandbox pivots into it, so the guest has no way around it.
func (d virtiofsd) command(sh vmm.Share, uid int) []string {
	asUser := uid != 0
	run := append([]string{d.path}, d.args(sh, asUser)...)
	unshare := []string{"unshare"}
	if asUser {
		unshare = append(unshare, "--user", "--map-root-user")
	}
	if sh.ReadOnly && !d.readOnly {
		unshare = append(unshare, "--mount")
		run = append([]string{"sh", "-c", roBindScript, "sh", sh.HostPath}, run...)
	}
	if len(unshare) == 1 {
		return run
	}
	return append(append(unshare, "--"), run...)
}

// virtiofsSock is where virtiofsd serves share i; QEMU connects to it.
func virtiofsSock(cfg vmm.Config, i int) string {
	return filepath.Join(cfg.RunDir, "vfs"+strconv.Itoa(i)+".sock")
}

// virtiofsArgs are QEMU's arguments for virtiofs share i.
func virtiofsArgs(cfg vmm.Config, i int) []string {
	id := "vfs" + strconv.Itoa(i)
	return []string{"-chardev", "socket,id=" + id + ",path=" + qemuEscape(virtiofsSock(cfg, i)),
		"-device", "vhost-user-fs-pci,queue-size=1024,chardev=" + id + ",tag=" + cfg.Shares[i].Tag}
}

func hasVirtiofs(cfg vmm.Config) bool {
	for _, s := range cfg.Shares {
		if s.Type == shareVirtiofs {
			return true
		}
	}
	return false
}

// checkShares refuses share types this backend cannot serve here.
func checkShares(cfg vmm.Config) error {
	for _, s := range cfg.Shares {
		switch s.Type {
		case "", "9p":
		case shareVirtiofs:
			if !sharedRAM {
				return errors.New("qemu: virtiofs shares need guest memory shared with virtiofsd, which this backend has only on Linux; use --share-type 9p")
			}
		default:
			return fmt.Errorf("qemu: share %s: type %q is not supported; use 9p or virtiofs", s.HostPath, s.Type)
		}
	}
	return nil
}

// errVirtiofsSuspend is why a VM with virtiofs shares is not saved.
var errVirtiofsSuspend = errors.New("virtiofs shares keep QEMU from saving the VM (vhost-user-fs blocks migration); machines with --share-type 9p suspend")

// fsDaemon is one share's virtiofsd.
type fsDaemon struct {
	share vmm.Share
	log   string
	proc  *vmm.Proc
}

// fsDaemons are the virtiofsd processes of one VM; they live and die with its QEMU.
type fsDaemons []*fsDaemon

// startVirtiofs starts a virtiofsd for each virtiofs share of cfg. Each serves a socket
// the agent made (so it exists, private, before QEMU dials it) and logs to the machine
// directory.
func (b *Backend) startVirtiofs(ctx context.Context, cfg vmm.Config) (fsDaemons, error) {
	if !hasVirtiofs(cfg) {
		return nil, nil
	}
	d, err := b.findVirtiofsd(ctx)
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	var ds fsDaemons
	for i, sh := range cfg.Shares {
		if sh.Type != shareVirtiofs {
			continue
		}
		fd, err := d.start(cfg, i)
		if err != nil {
			ds.stop()
			return nil, fmt.Errorf("qemu: share %s (%s): virtiofsd: %w", sh.Tag, sh.HostPath, err)
		}
		ds = append(ds, fd)
	}
	return ds, nil
}

func (d virtiofsd) start(cfg vmm.Config, i int) (*fsDaemon, error) {
	sh := cfg.Shares[i]
	if st, err := os.Stat(sh.HostPath); err != nil {
		return nil, err
	} else if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a folder", sh.HostPath)
	}
	sock := virtiofsSock(cfg, i)
	if len(sock) >= 108 {
		return nil, fmt.Errorf("socket path %s is too long for a unix socket (%d bytes, at most 107)", sock, len(sock))
	}
	os.Remove(sock)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	os.Chmod(sock, 0o600)
	lf, err := l.File()
	l.Close()
	if err != nil {
		return nil, err
	}
	defer lf.Close() // virtiofsd holds its own copy; ours would hide its death from QEMU
	fd := &fsDaemon{share: sh, log: filepath.Join(cfg.Dir, "virtiofsd-"+sh.Tag+".log")}
	logf, err := os.OpenFile(fd.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	argv := d.command(sh, os.Getuid())
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.ExtraFiles = []*os.File{lf} // fd 3
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := startChild(cmd); err != nil {
		os.Remove(sock)
		return nil, err
	}
	fd.proc = vmm.WatchProcess(vmm.CmdProcess(cmd), nil)
	return fd, nil
}

// exited names the first virtiofsd that has failed, with the end of its log. One that
// ended cleanly saw QEMU go first.
func (ds fsDaemons) exited() error {
	for _, d := range ds {
		if err := d.proc.Err(); err != nil {
			tail, _ := os.ReadFile(d.log)
			return fmt.Errorf("virtiofsd of share %s (%s) exited (%v): %s", d.share.Tag, d.share.HostPath, err, lastLines(string(tail), 3))
		}
	}
	return nil
}

// stop kills every virtiofsd and waits for it.
func (ds fsDaemons) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, d := range ds {
		d.proc.Kill(ctx)
	}
}
