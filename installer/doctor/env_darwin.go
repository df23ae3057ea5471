package doctor

import (
	"github.com/skiff-dev/skiff/machine"

	"context"
	"os/exec"
	"strings"
)

func platformEnv(env *Env, _ machine.Home) {
	env.HVSupport = func(ctx context.Context) (bool, error) {
		out, err := exec.CommandContext(ctx, "sysctl", "-n", "kern.hv_support").Output()
		if err != nil {
			return false, err
		}
		return strings.TrimSpace(string(out)) == "1", nil
	}
}
