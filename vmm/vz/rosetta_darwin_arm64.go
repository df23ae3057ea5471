package vz

import (
	"fmt"

	"github.com/Code-Hex/vz/v3"
)

// rosettaStatus says whether the host has Rosetta for Linux (macOS 13+), with a note for
// Describe either way. Missing Rosetta is not an error: arm64 images run.
func rosettaStatus() (bool, string) {
	switch vz.LinuxRosettaDirectoryShareAvailability() {
	case vz.LinuxRosettaAvailabilityNotSupported:
		return false, "unsupported (needs macOS 13 on Apple silicon)"
	case vz.LinuxRosettaAvailabilityNotInstalled:
		return false, "not installed (run: softwareupdate --install-rosetta --agree-to-license)"
	}
	return true, "on"
}

// rosettaShare returns the Rosetta share; rosettaStatus said the host has it.
func rosettaShare() (vz.DirectorySharingDeviceConfiguration, error) {
	share, err := vz.NewLinuxRosettaDirectoryShare()
	if err != nil {
		return nil, fmt.Errorf("vz: rosetta share: %w", err)
	}
	fs, err := vz.NewVirtioFileSystemDeviceConfiguration(RosettaTag)
	if err != nil {
		return nil, fmt.Errorf("vz: rosetta share: %w", err)
	}
	fs.SetDirectoryShare(share)
	return fs, nil
}
