//go:build linux

package main

import (
	"os"
	"os/signal"
	"runtime/pprof"

	"golang.org/x/sys/unix"
)

// SignalProfilePath is where SIGUSR2 has the agent record its CPU profile: the first
// signal starts it, the next one writes it (make bench-api profiles the guest's end of
// the engine API and port streams this way).
const SignalProfilePath = "/run/skiff-agent-cpu.pprof"

// profileOnSignal serves SIGUSR2 until the agent ends.
func profileOnSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGUSR2)
	for range ch {
		f, err := os.Create(SignalProfilePath + ".part")
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			logf("CPU profile: %v", err)
			if f != nil {
				f.Close()
			}
			continue
		}
		<-ch
		pprof.StopCPUProfile()
		f.Close()
		os.Rename(SignalProfilePath+".part", SignalProfilePath)
	}
}
