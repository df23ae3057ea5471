package installer

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// fakeRunner records command lines and fails those whose line starts with a key of fail.
type fakeRunner struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]error
	hook  func(name string, args []string)
}

func (f *fakeRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	line := strings.TrimSpace(name + " " + strings.Join(args, " "))
	f.calls = append(f.calls, line)
	if f.hook != nil {
		f.hook(name, args)
	}
	for prefix, err := range f.fail {
		if strings.HasPrefix(line, prefix) {
			return []byte("fake failure"), fmt.Errorf("%s: %w", line, err)
		}
	}
	return nil, nil
}
