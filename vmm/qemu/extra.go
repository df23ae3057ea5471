package qemu

import (
	"os"
	"strings"
)

// ExtraArgsEnv names QEMU arguments appended to every VM's command line, split on
// whitespace. It is an opt-in for experiments and benchmarks (a second NIC with
// hostfwd to compare against, tracing); normal use never sets it.
const ExtraArgsEnv = "SKIFF_QEMU_EXTRA_ARGS"

func extraArgs() []string { return strings.Fields(os.Getenv(ExtraArgsEnv)) }
