//go:build !linux

package main

import "errors"

func benchIdle(args []string) error { return errors.New("the idle benchmark reads /proc: Linux only") }
