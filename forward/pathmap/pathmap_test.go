package pathmap

import (
	"bytes"
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

func TestRewriteAnyKeyCase(t *testing.T) {
	tb := table(t)
	for _, body := range []string{
		`{"hostconfig":{"Binds":["/etc:/host-etc"]}}`,
		`{"HostConfig":{"binds":["/etc:/host-etc"]}}`,
		`{"HOSTCONFIG":{"BINDS":["/etc:/host-etc"]}}`,
		`{"HostConfig":{"Binds":["/Users/ann/a:/a"]},"hostconfig":{"Binds":["/etc:/host-etc"]}}`,
		`{"Binds":["/etc:/host-etc"]}`, // top level, as old API versions read it
		`{"hostConfig":{"mounts":[{"type":"bind","source":"/etc","target":"/x"}]}}`,
		`{"HostConfig":{"Mounts":[{"Type":"volume","type":"BIND","Source":"/etc","Target":"/x"}]}}`,
		`{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/Users/ann/a","source":"/etc","Target":"/x"}]}}`,
		// U+017F (long s) folds to s for Go's JSON decoder, the engine's.
		"{\"HostConfig\":{\"Bind\u017f\":[\"/etc:/host-etc\"]}}",
	} {
		if out, err := tb.RewriteBody("/v1.45/containers/create", []byte(body)); err == nil {
			t.Errorf("%s passed as %s", body, out)
		}
	}
	out, err := tb.RewriteBody("/containers/create", []byte(`{"hostconfig":{"binds":["/Users/ann/work/big/a:/a"],
		"mounts":[{"type":"bind","source":"/srv/data/x","target":"/x"}]},"Binds":["/srv/data/y:/y"]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"binds":["/mnt/big/a:/a"]`, `"source":"/mnt/data/x"`, `"Binds":["/mnt/data/y:/y"]`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("%s not in %s", want, out)
		}
	}
	out, err = tb.RewriteBody("/volumes/create", []byte(`{"driveropts":{"type":"none","o":"rbind,ro","device":"/srv/data/v"}}`))
	if err != nil || !strings.Contains(string(out), `"device":"/mnt/data/v"`) {
		t.Errorf("rbind volume: %s %v", out, err)
	}
}

// Podman's own create endpoints: a SpecGenerator's mounts, overlay volumes and named
// volumes, and a local volume's Options; refusals as for Docker's bodies.
func TestRewriteLibpod(t *testing.T) {
	tb := table(t)
	if err := tb.Deny("/Users/ann/.local/share/skiff"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/v5.4.0/libpod/containers/create", "/libpod/containers/create", "/v4.3.1/libpod/pods/create",
		"/v5.4.0/libpod/volumes/create"} {
		if !NeedsRewrite("POST", p) {
			t.Errorf("NeedsRewrite(%s) is false", p)
		}
	}
	if NeedsRewrite("POST", "/v5.4.0/libpod/containers/abc/start") || NeedsRewrite("GET", "/v5.4.0/libpod/containers/create") {
		t.Error("NeedsRewrite matches the wrong libpod endpoints")
	}
	out, err := tb.RewriteBody("/v5.4.0/libpod/containers/create", []byte(`{"name":"c","image":"busybox",
		"mounts":[{"destination":"/src","type":"bind","source":"/Users/ann/work/big/a","options":["rbind"]},
			{"destination":"/t","type":"tmpfs","source":"tmpfs"},
			{"Destination":"/g","Type":"glob","Source":"/srv/data/lib*"}],
		"overlay_volumes":[{"destination":"/o","source":"C:\\Users\\bob\\o"}],
		"volumes":[{"Name":"named","Dest":"/v"},{"Name":"/srv/data/v","Dest":"/w"}],
		"future":{"n":1.000000000000000001}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"source":"/mnt/big/a"`, `"source":"tmpfs"`, `"Source":"/mnt/data/lib*"`,
		`"source":"/mnt/c/Users/bob/o"`, `"Name":"named"`, `"Name":"/mnt/data/v"`, `1.000000000000000001`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("%s not in %s", want, out)
		}
	}
	for _, body := range []string{
		`{"mounts":[{"destination":"/e","type":"bind","source":"/etc"}]}`,
		`{"Mounts":[{"destination":"/e","source":"/etc","options":["bind"]}]}`,
		`{"mounts":[{"destination":"/e","type":"bind","source":"/Users/ann/a","SOURCE":"/etc"}]}`,
		`{"overlay_volumes":[{"destination":"/o","source":"/etc"}]}`,
		`{"volumes":[{"Name":"/etc","Dest":"/e"}]}`,
	} {
		if out, err := tb.RewriteBody("/v5.4.0/libpod/containers/create", []byte(body)); err == nil {
			t.Errorf("%s passed as %s", body, out)
		}
	}
	_, err = tb.RewriteBody("/libpod/containers/create", []byte(`{"mounts":[{"destination":"/s","type":"bind","source":"/Users/ann/.local/share/skiff/machines"}]}`))
	if !errors.Is(err, ErrDenied) || strings.Contains(err.Error(), "\n") {
		t.Errorf("a bind of the Skiff home: %v", err)
	}
	out, err = tb.RewriteBody("/v5.4.0/libpod/volumes/create", []byte(`{"Name":"v","Driver":"local","Options":{"type":"none","o":"bind","device":"/srv/data/x"}}`))
	if err != nil || !strings.Contains(string(out), `"device":"/mnt/data/x"`) {
		t.Errorf("libpod bind volume: %s %v", out, err)
	}
	if _, err := tb.RewriteBody("/v5.4.0/libpod/volumes/create", []byte(`{"Options":{"o":"rbind","device":"/Users/ann/.local/share/skiff"}}`)); !errors.Is(err, ErrDenied) {
		t.Errorf("a libpod volume of the Skiff home: %v", err)
	}
	// Docker's option name means nothing to Podman's endpoint, and the other way round.
	out, err = tb.RewriteBody("/v5.4.0/libpod/volumes/create", []byte(`{"DriverOpts":{"o":"bind","device":"/etc"}}`))
	if err != nil || !strings.Contains(string(out), `"device":"/etc"`) {
		t.Errorf("DriverOpts on libpod: %s %v", out, err)
	}
}

func TestRewriteRefusesBadBody(t *testing.T) {
	tb := table(t)
	for _, body := range []string{`[{"HostConfig":{}}]`, `{"HostConfig":`, `"x"`, "\x00"} {
		if _, err := tb.RewriteBody("/containers/create", []byte(body)); !errors.Is(err, ErrBadBody) {
			t.Errorf("%q: %v", body, err)
		}
	}
	if out, err := tb.RewriteBody("/containers/create", []byte("  ")); err != nil || string(out) != "  " {
		t.Errorf("empty body: %q %v", out, err)
	}
}

func TestDeny(t *testing.T) {
	tb := table(t)
	home := "/Users/ann/.local/share/skiff"
	if err := tb.Deny(home, `C:\Users\bob\AppData\Local\skiff`); err != nil {
		t.Fatal(err)
	}
	if err := tb.Deny("relative"); err == nil {
		t.Error("a relative denied path was accepted")
	}
	for _, p := range []string{home, home + "/machines/m/key", "/Users/ann/.local/share/skiff/../skiff/x",
		"/Users/ann/.local/share/SKIFF/x", `c:\users\BOB\appdata\local\skiff\cache`} {
		_, err := tb.Translate(p)
		var de *DeniedError
		if !errors.Is(err, ErrDenied) || !errors.As(err, &de) {
			t.Errorf("Translate(%q): %v, want denied", p, err)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, p) {
			t.Errorf("message %q", msg)
		}
	}
	// Beside or above it is fine: the share server keeps the folder itself out of reach.
	for _, p := range []string{"/Users/ann/.local/share", "/Users/ann/.local/share/skiff2", "/Users/ann/src"} {
		if _, err := tb.Translate(p); err != nil {
			t.Errorf("Translate(%q): %v", p, err)
		}
	}
	if _, err := tb.RewriteBody("/containers/create", []byte(`{"HostConfig":{"Binds":["`+home+`:/s"]}}`)); !errors.Is(err, ErrDenied) {
		t.Errorf("a bind of the Skiff home: %v", err)
	}
}

// fuzzTable is the table both fuzz targets check against, with Skiff's home denied.
func fuzzTable(t testing.TB) (*Table, []string, []string) {
	tb, err := New([]Share{{Host: "/Users/ann", Guest: "/Users/ann"}, {Host: "/srv/data", Guest: "/mnt/data"},
		{Host: `C:\Users\bob`, Guest: "/mnt/c/Users/bob"}, {Host: `\\wsl$\Ubuntu\home\bob`, Guest: "/mnt/wsl"}}, DefaultPassthrough)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Deny("/Users/ann/.local/share/skiff", `C:\Users\bob\AppData\Local\skiff`); err != nil {
		t.Fatal(err)
	}
	allowed := append([]string{"/Users/ann", "/mnt/data", "/mnt/c/Users/bob", "/mnt/wsl"}, DefaultPassthrough...)
	// Where the denied folders land in the guest (case-folded: the hosts fold case).
	denied := []string{"/users/ann/.local/share/skiff", "/mnt/c/users/bob/appdata/local/skiff"}
	return tb, allowed, denied
}

// checkGuest is the safety property of a translated path: inside a share's guest path or
// on the passthrough list, never containing "..", never a denied folder or inside one.
func checkGuest(t *testing.T, in, g string, allowed, denied []string) {
	t.Helper()
	if strings.Contains("/"+g+"/", "/../") {
		t.Fatalf("%q became %q, which contains ..", in, g)
	}
	for _, d := range denied {
		if l := strings.ToLower(g); l == d || strings.HasPrefix(l, d+"/") {
			t.Fatalf("%q became %q, inside a denied folder", in, g)
		}
	}
	for _, a := range allowed {
		if g == a || strings.HasPrefix(g, a+"/") {
			return
		}
	}
	t.Fatalf("%q became %q, outside every share", in, g)
}

// FuzzTranslate checks the safety property on single paths.
func FuzzTranslate(f *testing.F) {
	for _, s := range []string{"/Users/ann/x", `C:\Users\bob\..\..\Windows`, `\\wsl$\Ubuntu\home\bob\..`, "/srv/data/../../etc",
		"/proc/1", `\\?\C:\x`, "/Users/ann/.local/share/skiff/x", `c:/users/bob/appdata/local/SKIFF`} {
		f.Add(s)
	}
	tb, allowed, denied := fuzzTable(f)
	f.Fuzz(func(t *testing.T, p string) {
		if g, err := tb.Translate(p); err == nil {
			checkGuest(t, p, g, allowed, denied)
		}
		if b, err := tb.TranslateBind(p + ":/x"); err == nil {
			if src, _ := splitBind(b); IsHostPath(src) {
				checkGuest(t, p, src, allowed, denied)
			}
		}
	})
}

// FuzzRewriteBody checks container-create bodies: whatever the JSON, every bind the
// engine would read from the rewritten body (any key case, top level or HostConfig)
// satisfies the safety property.
func FuzzRewriteBody(f *testing.F) {
	for _, s := range []string{
		`{"HostConfig":{"Binds":["/Users/ann/a:/a","vol:/v"],"Mounts":[{"Type":"bind","Source":"/srv/data/x"}]}}`,
		`{"hostconfig":{"binds":["/etc:/e"]}}`,
		`{"Binds":["C:\\Users\\bob\\x:/x"],"HostConfig":null}`,
		`{"HostConfig":{"mounts":[{"type":"BIND","SOURCE":"/Users/ann/.local/share/skiff"}]}}`,
		`{"mounts":[{"destination":"/a","type":"bind","source":"/Users/ann/a"}],"volumes":[{"Name":"/srv/data","Dest":"/d"}]}`,
		`{"overlay_volumes":[{"destination":"/o","source":"C:\\Users\\bob\\..\\x"}],"Options":{"o":"bind","device":"/etc"}}`,
	} {
		f.Add(s)
	}
	tb, allowed, denied := fuzzTable(f)
	f.Fuzz(func(t *testing.T, body string) {
		out, err := tb.RewriteBody("/containers/create", []byte(body))
		if err != nil || len(bytes.TrimSpace(out)) == 0 {
			return
		}
		var doc map[string]any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("rewritten body is not JSON: %v\n%s", err, out)
		}
		check := func(hc map[string]any) {
			each(hc, "Binds", func(_ string, v any) error {
				bs, _ := v.([]any)
				for _, b := range bs {
					if s, ok := b.(string); ok {
						if src, _ := splitBind(s); IsHostPath(src) {
							checkGuest(t, body, src, allowed, denied)
						}
					}
				}
				return nil
			})
			each(hc, "Mounts", func(_ string, v any) error {
				ms, _ := v.([]any)
				for _, m := range ms {
					if mm, ok := m.(map[string]any); ok && isBind(mm) {
						each(mm, "Source", func(_ string, v any) error {
							if s, ok := v.(string); ok && s != "" {
								checkGuest(t, body, s, allowed, denied)
							}
							return nil
						})
					}
				}
				return nil
			})
		}
		check(doc)
		each(doc, "HostConfig", func(_ string, v any) error {
			hc, _ := v.(map[string]any)
			check(hc)
			return nil
		})
		checkLibpod(t, tb, body, allowed, denied)
	})
}

// checkLibpod is FuzzRewriteBody's check of Podman's create endpoints: every path
// Podman would read from the rewritten body satisfies the safety property.
func checkLibpod(t *testing.T, tb *Table, body string, allowed, denied []string) {
	t.Helper()
	out, err := tb.RewriteBody("/v5.4.0/libpod/containers/create", []byte(body))
	if err == nil && len(bytes.TrimSpace(out)) > 0 {
		var doc map[string]any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("rewritten spec is not JSON: %v\n%s", err, out)
		}
		for _, f := range [][2]string{{"mounts", "source"}, {"overlay_volumes", "source"}, {"volumes", "Name"}} {
			each(doc, f[0], func(_ string, v any) error {
				items, _ := v.([]any)
				for _, it := range items {
					m, _ := it.(map[string]any)
					each(m, f[1], func(_ string, v any) error {
						if s, ok := v.(string); ok && IsHostPath(s) {
							checkGuest(t, body, s, allowed, denied)
						}
						return nil
					})
				}
				return nil
			})
		}
	}
	out, err = tb.RewriteBody("/v5.4.0/libpod/volumes/create", []byte(body))
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		return
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("rewritten volume is not JSON: %v\n%s", err, out)
	}
	each(doc, "Options", func(_ string, v any) error {
		opts, _ := v.(map[string]any)
		o, _ := opts["o"].(string)
		dev, _ := opts["device"].(string)
		if o = "," + o + ","; dev != "" && (strings.Contains(o, ",bind,") || strings.Contains(o, ",rbind,")) {
			checkGuest(t, body, dev, allowed, denied)
		}
		return nil
	})
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		p, root string
		want    bool
	}{
		{"/root", "/root", true}, {"/root/a/b", "/root", true}, {"/root", "/", true},
		{"/rootfs", "/root", false}, {"/", "/root", false}, {"/root/../etc", "/root", false},
	} {
		if got := Within(c.p, c.root); got != c.want {
			t.Errorf("Within(%q, %q) = %v, want %v", c.p, c.root, got, c.want)
		}
	}
}
