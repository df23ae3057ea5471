package installer

import "github.com/skiff-dev/skiff/installer/hostenv"

// Runner runs the OS tools autostart needs; it is hostenv's, which sudo also goes through.
type Runner = hostenv.Runner

func runnerOr(r Runner) Runner { return hostenv.RunnerOr(r) }
