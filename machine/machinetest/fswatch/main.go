// Command fswatch is the Go watcher of the file-event end-to-end tests: it watches the
// folders it is given, and every folder created in them, with github.com/fsnotify/fsnotify
// (as air, reflex or a Go dev server do) and prints each event as "OP name" on a line.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

func main() {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, root := range os.Args[1:] {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				err = w.Add(p)
			}
			return err
		})
	}
	fmt.Println("READY")
	for {
		select {
		case ev := <-w.Events:
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					w.Add(ev.Name)
				}
			}
			fmt.Printf("%s %s\n", ev.Op, ev.Name)
		case err := <-w.Errors:
			fmt.Printf("ERROR %v\n", err)
		}
	}
}
