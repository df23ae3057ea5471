package vz

import (
	"errors"

	"github.com/Code-Hex/vz/v3"
)

// rosettaStatus: Rosetta for Linux exists only on Apple silicon.
func rosettaStatus() (bool, string) { return false, "unsupported (Intel Mac)" }

func rosettaShare() (vz.DirectorySharingDeviceConfiguration, error) {
	return nil, errors.New("vz: Rosetta for Linux needs Apple silicon")
}
