package vz

import (
	"fmt"

	"github.com/Code-Hex/vz/v3"
)

// rosettaShare returns the Rosetta share if the host has Rosetta for Linux (macOS 13+),
// and a note for Describe either way. Missing Rosetta is not an error: arm64 images run.
func rosettaShare() (vz.DirectorySharingDeviceConfiguration, string, error) {
	switch vz.LinuxRosettaDirectoryShareAvailability() {
	case vz.LinuxRosettaAvailabilityNotSupported:
		return nil, "unsupported (needs macOS 13 on Apple silicon)", nil
	case vz.LinuxRosettaAvailabilityNotInstalled:
		return nil, "not installed (run: softwareupdate --install-rosetta --agree-to-license)", nil
	}
	share, err := vz.NewLinuxRosettaDirectoryShare()
	if err != nil {
		return nil, "", fmt.Errorf("vz: rosetta share: %w", err)
	}
	fs, err := vz.NewVirtioFileSystemDeviceConfiguration(RosettaTag)
	if err != nil {
		return nil, "", fmt.Errorf("vz: rosetta share: %w", err)
	}
	fs.SetDirectoryShare(share)
	return fs, "on", nil
}
