// Package hostenvtest has a fake hostenv.Runner for tests of what runs OS tools.
package hostenvtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Runner records command lines and fails those whose line starts with a key of Fail.
type Runner struct {
	mu    sync.Mutex
	Calls []string
	Fail  map[string]error
	Hook  func(name string, args []string)
	// Output is what a command whose line starts with a key prints.
	Output map[string]string
}

func (f *Runner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	line := strings.TrimSpace(name + " " + strings.Join(args, " "))
	f.Calls = append(f.Calls, line)
	if f.Hook != nil {
		f.Hook(name, args)
	}
	for prefix, err := range f.Fail {
		if strings.HasPrefix(line, prefix) {
			return []byte("fake failure"), fmt.Errorf("%s: %w", line, err)
		}
	}
	for prefix, out := range f.Output {
		if strings.HasPrefix(line, prefix) {
			return []byte(out), nil
		}
	}
	return nil, nil
}
