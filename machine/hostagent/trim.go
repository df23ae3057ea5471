package hostagent

import (
	"context"
	"runtime/debug"
	"time"
)

// trimEvery is how often the running agent gives back what it holds for nothing.
const trimEvery = 10 * time.Minute

// freeMemory gives boot's garbage (seed, probes, first streams) and the code only
// start-up ran (trimResident) back to the OS soon after the machine runs, and again every
// trimEvery: the agent idles for hours next to a VM and should not sit on either.
func (a *Agent) freeMemory(ctx context.Context) error {
	wait := 5 * time.Second
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		debug.FreeOSMemory()
		if n, err := trimResident(); err != nil {
			a.logf("free memory: %v (%d bytes of code unmapped)", err, n)
		}
		wait = trimEvery
	}
}
