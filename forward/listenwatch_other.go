//go:build !linux

package forward

import (
	"errors"
	"fmt"
)

// ListenWatch is Linux's (the guest's); elsewhere the socket tables are not read at all.
type ListenWatch struct{}

// NewListenWatch fails outside Linux.
func NewListenWatch() (*ListenWatch, error) {
	return nil, fmt.Errorf("listen watch: %w", errors.ErrUnsupported)
}

// C never receives.
func (w *ListenWatch) C() <-chan struct{} { return nil }

// Close does nothing.
func (w *ListenWatch) Close() {}
