package hostenv

import (
	"fmt"
	"strings"
)

// Shell is a shell dialect for `skiff machine env`.
type Shell string

const (
	ShellPOSIX      Shell = "bash"
	ShellFish       Shell = "fish"
	ShellPowerShell Shell = "powershell"
	ShellCmd        Shell = "cmd"
)

// EnvLines prints how to point DOCKER_HOST at a machine in the given shell.
func EnvLines(shell Shell, endpoint string) (string, error) {
	return ShellLines(shell, DockerContext{}.Env(Target{Endpoint: endpoint}))
}

// ShellLines prints how to set vars in the given shell.
func ShellLines(shell Shell, vars []EnvVar) (string, error) {
	var format string
	switch shell {
	case ShellPOSIX, "zsh", "sh":
		format = "export %s=%q\n"
	case ShellFish:
		format = "set -gx %s %q;\n"
	case ShellPowerShell, "pwsh":
		format = "$Env:%s = \"%s\"\n"
	case ShellCmd:
		format = "SET %s=%s\n"
	default:
		return "", fmt.Errorf("unknown shell %q: use bash, zsh, fish, powershell or cmd", shell)
	}
	var b strings.Builder
	for _, v := range vars {
		fmt.Fprintf(&b, format, v.Name, v.Value)
	}
	return b.String(), nil
}
