package pathmap

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func table(t *testing.T) *Table {
	t.Helper()
	tb, err := New([]Share{
		{Host: "/Users/ann", Guest: "/Users/ann"},
		{Host: "/Users/ann/work/big", Guest: "/mnt/big"}, // nested: longest prefix wins
		{Host: "/srv/data", Guest: "/mnt/data"},
		{Host: `C:\Users\bob`, Guest: "/mnt/c/Users/bob"},
		{Host: `\\fileserver\projects`, Guest: "/mnt/projects"},
		{Host: `\\wsl$\Ubuntu\home\bob`, Guest: "/mnt/wsl/ubuntu"},
	}, DefaultPassthrough)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestTranslate(t *testing.T) {
	tb := table(t)
	cases := map[string]string{
		"/Users/ann":                      "/Users/ann",
		"/Users/ann/src/app":              "/Users/ann/src/app",
		"/Users/ann/work/big":             "/mnt/big",
		"/Users/ann/work/big/x/y":         "/mnt/big/x/y",
		"/Users/ann/work/bigger":          "/Users/ann/work/bigger",
		"/srv/data/./a/../b":              "/mnt/data/b",
		"/srv/data/":                      "/mnt/data",
		`C:\Users\bob\proj`:               "/mnt/c/Users/bob/proj",
		`c:\users\BOB\proj`:               "/mnt/c/Users/bob/proj",
		`C:/Users/bob/proj/`:              "/mnt/c/Users/bob/proj",
		`C:\Users\bob`:                    "/mnt/c/Users/bob",
		`\\fileserver\projects\x\y.txt`:   "/mnt/projects/x/y.txt",
		`\\FILESERVER\Projects`:           "/mnt/projects",
		`//fileserver/projects/z`:         "/mnt/projects/z",
		`\\wsl$\Ubuntu\home\bob\code`:     "/mnt/wsl/ubuntu/code",
		`\\wsl.localhost\Ubuntu\home\bob`: "/mnt/wsl/ubuntu",
		"/var/run/docker.sock":            "/var/run/docker.sock",
		"/proc/sys/net":                   "/proc/sys/net",
		"/etc/localtime":                  "/etc/localtime",
	}
	for in, want := range cases {
		got, err := tb.Translate(in)
		if err != nil {
			t.Errorf("Translate(%q): %v", in, err)
			continue
		}
		if got != want {
			t.Errorf("Translate(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTranslateRefuses(t *testing.T) {
	tb := table(t)
	for _, in := range []string{
		"/Users/bob/x",             // not shared
		"/Users/ann/../bob",        // climbs out of a share
		"/Users/annie",             // prefix of a name is not a parent
		`D:\data`,                  // other drive
		`C:\Users\bobby`,           // prefix of a name again
		`\\otherserver\projects\x`, // other server
		`\\wsl$\Debian\home\bob`,   // other distro
		"/etc/passwd",              // guest system path not on the passthrough list
		"/procfoo",
		"relative/path",
		`\\`,
	} {
		got, err := tb.Translate(in)
		if err == nil {
			t.Errorf("Translate(%q) = %q, want an error", in, got)
			continue
		}
		var ns *NotSharedError
		if errors.As(err, &ns) && !strings.Contains(err.Error(), "/Users/ann") {
			t.Errorf("error for %q does not name the shares: %v", in, err)
		}
	}
}

func TestTranslateBind(t *testing.T) {
	tb := table(t)
	cases := map[string]string{
		"/Users/ann/src:/src":                       "/Users/ann/src:/src",
		"/Users/ann/work/big/a:/a:ro":               "/mnt/big/a:/a:ro",
		`C:\Users\bob\proj:/src`:                    "/mnt/c/Users/bob/proj:/src",
		`C:\Users\bob\proj:/src:ro,z`:               "/mnt/c/Users/bob/proj:/src:ro,z",
		"myvolume:/data":                            "myvolume:/data",
		"/var/run/docker.sock:/var/run/docker.sock": "/var/run/docker.sock:/var/run/docker.sock",
	}
	for in, want := range cases {
		got, err := tb.TranslateBind(in)
		if err != nil || got != want {
			t.Errorf("TranslateBind(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := tb.TranslateBind("/nope:/x"); err == nil {
		t.Error("a bind of an unshared folder was accepted")
	}
}

func TestRewriteContainerCreate(t *testing.T) {
	tb := table(t)
	body := `{"Image":"x","Memory":9007199254740993,"HostConfig":{"Binds":["/Users/ann/a:/a","vol:/v"],
	  "Mounts":[{"Type":"bind","Source":"C:\\Users\\bob\\b","Target":"/b"},{"Type":"volume","Source":"named","Target":"/n"}],
	  "Future":{"Keep":true}}}`
	out, err := tb.RewriteBody("/v1.45/containers/create", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Memory     json.Number
		HostConfig struct {
			Binds  []string
			Mounts []struct{ Type, Source, Target string }
			Future map[string]bool
		}
	}
	d := json.NewDecoder(strings.NewReader(string(out)))
	d.UseNumber()
	if err := d.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Memory.String() != "9007199254740993" {
		t.Errorf("a large number changed: %s", doc.Memory)
	}
	if doc.HostConfig.Binds[0] != "/Users/ann/a:/a" || doc.HostConfig.Binds[1] != "vol:/v" {
		t.Errorf("binds: %v", doc.HostConfig.Binds)
	}
	if doc.HostConfig.Mounts[0].Source != "/mnt/c/Users/bob/b" || doc.HostConfig.Mounts[1].Source != "named" {
		t.Errorf("mounts: %+v", doc.HostConfig.Mounts)
	}
	if !doc.HostConfig.Future["Keep"] {
		t.Error("an unknown field was dropped")
	}
	if _, err := tb.RewriteBody("/containers/create", []byte(`{"HostConfig":{"Binds":["/etc:/host-etc"]}}`)); err == nil {
		t.Error("a bind of /etc (not shared, not passthrough) was accepted")
	}
}

func TestRewriteVolumeCreate(t *testing.T) {
	tb := table(t)
	out, err := tb.RewriteBody("/volumes/create", []byte(`{"Name":"v","DriverOpts":{"type":"none","o":"bind","device":"/srv/data/x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"device":"/mnt/data/x"`) {
		t.Errorf("device not translated: %s", out)
	}
	if !NeedsRewrite("POST", "/v1.41/volumes/create") || NeedsRewrite("GET", "/containers/create") || NeedsRewrite("POST", "/containers/json") {
		t.Error("NeedsRewrite matches the wrong endpoints")
	}
}

// FuzzTranslate checks the safety property: a translated path is always inside a share's
// guest path or on the passthrough list, and never contains a "..".
func FuzzTranslate(f *testing.F) {
	for _, s := range []string{"/Users/ann/x", `C:\Users\bob\..\..\Windows`, `\\wsl$\Ubuntu\home\bob\..`, "/srv/data/../../etc", "/proc/1", `\\?\C:\x`} {
		f.Add(s)
	}
	tb, _ := New([]Share{{Host: "/Users/ann", Guest: "/Users/ann"}, {Host: "/srv/data", Guest: "/mnt/data"},
		{Host: `C:\Users\bob`, Guest: "/mnt/c/Users/bob"}, {Host: `\\wsl$\Ubuntu\home\bob`, Guest: "/mnt/wsl"}}, DefaultPassthrough)
	allowed := []string{"/Users/ann", "/mnt/data", "/mnt/c/Users/bob", "/mnt/wsl"}
	allowed = append(allowed, DefaultPassthrough...)
	f.Fuzz(func(t *testing.T, p string) {
		g, err := tb.Translate(p)
		if err != nil {
			return
		}
		if strings.Contains("/"+g+"/", "/../") {
			t.Fatalf("Translate(%q) = %q contains ..", p, g)
		}
		for _, a := range allowed {
			if g == a || strings.HasPrefix(g, a+"/") {
				return
			}
		}
		t.Fatalf("Translate(%q) = %q escapes every share", p, g)
	})
}
