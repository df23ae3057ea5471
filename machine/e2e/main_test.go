//go:build linux

package e2e

import (
	"os"
	"testing"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	machinetest.RemoveBin()
	os.Exit(code)
}
