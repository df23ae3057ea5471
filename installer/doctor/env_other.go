//go:build !linux && !darwin && !windows

package doctor

import "github.com/skiff-dev/skiff/machine"

func platformEnv(*Env, machine.Home) {}
