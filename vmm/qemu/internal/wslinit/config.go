// Package wslinit is the WSL stand-in's init (backend qemu-wsl): PID 1 of a QEMU guest
// that boots Skiff's kernel and does for the image's WSL root filesystem what WSL's own
// init does for a distro, so that wsl-rootfs.tar and `skiff-agent boot-wsl` run here as
// they would on Windows. It is a stand-in, not a copy: what it does is what boot-wsl may
// rely on (see vmm/PLATFORMS.md).
package wslinit

// ConfigPath is where the host leaves Config in the stand-in's initrd.
const ConfigPath = "/wsl-standin.json"

// Config is what the host tells the stand-in about the machine.
type Config struct {
	// Command runs in the distro for the machine's life, as wsl.exe's command does
	// (vmm/wsl2.AgentCommand).
	Command []string `json:"command"`
	// DistroSerial is the distro's ext4 disk (WSL's ext4.vhdx); TarSerial is the root
	// filesystem tar, unpacked into it on its first boot as `wsl --import` does.
	DistroSerial string `json:"distroSerial"`
	TarSerial    string `json:"tarSerial"`
	// SeedSerial is the seed disk; its bytes appear in the distro at SeedPath, where
	// WSL shows the seed file on the Windows drive (/mnt/c/...).
	SeedSerial string `json:"seedSerial"`
	SeedPath   string `json:"seedPath"`
}
