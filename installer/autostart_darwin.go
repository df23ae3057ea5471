package installer

func nativeAutostart() (autostartDriver, string) { return launchdDriver{}, "darwin" }
