//go:build !linux

package main

import "errors"

func benchFileEvents([]string) error {
	return errors.New("the fsevents benchmark reads /proc: Linux only")
}

func benchFileEventsWatch([]string) error {
	return errors.New("the fsevents watcher runs in a Linux container")
}
