//go:build !linux && !darwin && !windows

package installer

import "runtime"

func nativeAutostart() (autostartDriver, string) { return nil, runtime.GOOS }
