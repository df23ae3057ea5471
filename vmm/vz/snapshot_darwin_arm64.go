package vz

import "github.com/Code-Hex/vz/v3"

// vz declares save and restore for Apple silicon only.

func saveState(vm *vz.VirtualMachine, path string) error { return vm.SaveMachineStateToPath(path) }

func restoreState(vm *vz.VirtualMachine, path string) error {
	return vm.RestoreMachineStateFromURL(path)
}
