package doctor

import (
	"github.com/skiff-dev/skiff/machine"

	"errors"
	"io/fs"
	"os"
)

func platformEnv(env *Env, _ machine.Home) {
	env.PipeExists = func(name string) (bool, error) {
		_, err := os.Stat(name)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return true, nil
	}
}
