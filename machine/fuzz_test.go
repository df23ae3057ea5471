package machine

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseMount: any --mount value is refused with an error or gives a mount whose host
// path is absolute and clean.
func FuzzParseMount(f *testing.F) {
	for _, s := range []string{"/src", "/src:/w", "/src:/w:ro", "C:\\Users\\me:/w", "::", "/a:b:c:d", "~/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMount(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("a refusal of %q is not one line: %q", s, err)
			}
			return
		}
		if !filepath.IsAbs(m.HostPath) && !isWindowsAbs(m.HostPath) {
			t.Fatalf("%q gives a relative host path %q", s, m.HostPath)
		}
	})
}

// FuzzParseSize: sizes parse to a positive number of MiB or fail, and never overflow.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"2G", "2048M", "1T", "64", "0", "-1G", "9999999999999999T", "1.5G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && (n < 0 || n > 1<<50) {
			t.Fatalf("%q parses to %d MiB", s, n)
		}
	})
}

// FuzzLoad: a machine's config file, however damaged, loads with an error or as a spec
// that validates or not without panicking and saves back to the same spec.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":1,"name":"dev","cpus":2,"memoryMiB":2048,"diskGiB":64,"engine":"docker","mounts":[{"hostPath":"/home/u","guestPath":"/home/u"}]}`))
	f.Add([]byte(`{"schemaVersion":99}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "config.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Load(p)
		if err != nil {
			return
		}
		s.Validate(Limits{HostCPUs: 4, HostMemoryMiB: 8192})
		if err := s.Save(p); err != nil {
			t.Fatal(err)
		}
		again, err := Load(p)
		if err != nil || !reflect.DeepEqual(s, again) {
			t.Fatalf("a spec does not read back: %v\n%+v\n%+v", err, s, again)
		}
	})
}
