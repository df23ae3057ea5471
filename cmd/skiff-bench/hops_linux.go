package main

import "time"

// hopProcCPU is a host process's CPU time, for the per-hop breakdown.
func hopProcCPU(pid int) (time.Duration, error) { return procCPU(pid) }
