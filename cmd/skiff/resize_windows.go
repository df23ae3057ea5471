package main

import "os"

// Windows consoles have no resize signal; the initial size stays.
func notifyResize(ch chan os.Signal) {}
