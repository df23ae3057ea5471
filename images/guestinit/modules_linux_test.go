package guestinit

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestModuleLines(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(`kernel/net/llc/llc.ko:
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/bridge/br_netfilter.ko: kernel/net/bridge/bridge.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/fs/overlayfs/overlay.ko:
`), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\n"), 0o644)
	lines, left, err := moduleLines(dir, []string{"br_netfilter", "bridge", "crc32c-intel", "ext4", "net-pf-16"})
	if err != nil {
		t.Fatal(err)
	}
	// Each module once, after what it needs; the built-in one needs no line; the alias is
	// left to modprobe.
	want := [][]string{
		{"kernel/net/llc/llc.ko"},
		{"kernel/net/802/stp.ko", "kernel/net/llc/llc.ko"},
		{"kernel/net/bridge/bridge.ko", "kernel/net/802/stp.ko", "kernel/net/llc/llc.ko"},
		{"kernel/net/bridge/br_netfilter.ko", "kernel/net/bridge/bridge.ko", "kernel/net/802/stp.ko", "kernel/net/llc/llc.ko"},
		{"kernel/arch/x86/crypto/crc32c-intel.ko"},
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("lines:\n%q\nwant\n%q", lines, want)
	}
	if !reflect.DeepEqual(left, []string{"net-pf-16"}) {
		t.Errorf("left %q, want the alias alone", left)
	}
	if _, _, err := moduleLines(t.TempDir(), []string{"x"}); err == nil {
		t.Error("a tree without modules.dep: no error")
	}
}
