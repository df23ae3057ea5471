package installer

func nativeAutostart() (autostartDriver, string) { return schtasksDriver{}, "windows" }
