//go:build !linux

package main

import (
	"errors"
	"time"
)

// hopProcCPU is a host process's CPU time, for the per-hop breakdown.
func hopProcCPU(int) (time.Duration, error) {
	return 0, errors.New("the per-hop CPU breakdown reads /proc: Linux only")
}
