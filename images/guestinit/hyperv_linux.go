package guestinit

import "os"

// hypervServices are the VMBus drivers a Hyper-V guest runs once it is up: hv_utils
// answers the host's shutdown request, time sync, heartbeat and key-value exchange, and
// hv_balloon lets the host take memory back and add it. Nothing at boot waits for them.
var hypervServices = []string{"hv_utils", "hv_balloon"}

// loadHyperVServices loads them where stage 1 found a VMBus (hv_vmbus registered its bus).
func loadHyperVServices() {
	if _, err := os.Stat("/sys/bus/vmbus"); err != nil {
		return
	}
	// hv_utils answers the host's shutdown request by running the kernel's poweroff_cmd
	// (/sbin/poweroff, which the image lacks, and failing that it cuts the power): the
	// agent as PID 1 takes SIGPWR as a request to stop the engine and power off.
	os.WriteFile("/proc/sys/kernel/poweroff_cmd", []byte("/usr/bin/kill -PWR 1"), 0o644)
	loadModules(hypervServices...)
}
