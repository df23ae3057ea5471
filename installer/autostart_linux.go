package installer

func nativeAutostart() (autostartDriver, string) { return systemdDriver{}, "linux" }
