package guestinit

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ModulesDir is where the root keeps the running kernel's modules.
func ModulesDir() string {
	var u unix.Utsname
	unix.Uname(&u)
	return filepath.Join("/usr/lib/modules", unix.ByteSliceToString(u.Release[:]))
}

// loadModules loads modules from the root's module tree the way stage 1 loads its own:
// each as soon as what it needs is in, from this process. kmod is a dynamically linked
// exec (~0.1 s of emulated CPU) that the boot's engine preload ran alongside the engine's
// start; it still answers for what the tree cannot (aliases, a module that failed).
func loadModules(names ...string) {
	dir := ModulesDir()
	lines, left, err := moduleLines(dir, names)
	if err == nil {
		var fd int
		if fd, err = unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			m := newModuleList(fd)
			for _, l := range lines {
				m.root = m.add(m.root, l)
			}
			m.load(m.root, loadModuleAt)
			unix.Close(fd)
			for _, l := range lines {
				if !m.wait(l[0]) {
					left = append(left, moduleName(l[0]))
				}
			}
		}
	}
	if err != nil {
		left = names
	}
	if len(left) > 0 {
		exec.Command("/usr/sbin/modprobe", append([]string{"-q", "-a"}, left...)...).Run()
	}
}

// moduleLines resolves names against dir's modules.dep into load.list-shaped lines (a
// module file, then the files it needs), dependencies first. Built-in modules need no
// line; names the tree does not have (aliases) come back in left.
func moduleLines(dir string, names []string) (lines [][]string, left []string, err error) {
	deps := map[string][]string{} // module name -> its file, then the files it needs
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		file, needs, ok := strings.Cut(sc.Text(), ":")
		if ok {
			deps[moduleName(file)] = append([]string{file}, strings.Fields(needs)...)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, file := range strings.Fields(string(b)) {
			builtin[moduleName(file)] = true
		}
	}
	seen := map[string]bool{}
	var visit func(name string) bool
	visit = func(name string) bool {
		d, ok := deps[name]
		if !ok {
			return false
		}
		if !seen[name] {
			seen[name] = true
			for _, need := range d[1:] {
				visit(moduleName(need))
			}
			lines = append(lines, d)
		}
		return true
	}
	for _, n := range names {
		if key := strings.ReplaceAll(n, "-", "_"); !builtin[key] && !visit(key) {
			left = append(left, n)
		}
	}
	return lines, left, nil
}

// moduleName is the name a module file loads as: "kernel/fs/fuse/virtiofs.ko" is
// virtiofs, and dashes read as underscores.
func moduleName(file string) string {
	base := filepath.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}
