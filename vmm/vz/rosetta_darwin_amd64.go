package vz

import "github.com/Code-Hex/vz/v3"

// rosettaShare: Rosetta for Linux exists only on Apple silicon.
func rosettaShare() (vz.DirectorySharingDeviceConfiguration, string, error) {
	return nil, "unsupported (Intel Mac)", nil
}
