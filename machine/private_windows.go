package machine

import "os"

// privateDir makes dir if it is missing. Windows' temp folder is per user already.
func privateDir(dir string) error { return os.MkdirAll(dir, 0o700) }
