package installer

import (
	"github.com/skiff-dev/skiff/installer/hostenv/hostenvtest"

	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"
)

func unitLines(t *testing.T, unit, key string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestSystemdUnitContent(t *testing.T) {
	a := Autostart{Binary: "/usr/bin/skiff", Machine: "default"}
	files, err := a.Files("linux")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Path != ".config/systemd/user/skiff-machine-default.service" {
		t.Fatalf("files = %+v", files)
	}
	u := string(files[0].Content)
	for key, want := range map[string]string{
		"ExecStart":       "/usr/bin/skiff machine start default",
		"ExecStop":        "/usr/bin/skiff machine stop default",
		"Type":            "oneshot",
		"RemainAfterExit": "yes",
		"WantedBy":        "default.target",
	} {
		if got := unitLines(t, u, key); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q\n%s", key, got, want, u)
		}
	}
	if got := unitLines(t, u, "Environment"); got != nil {
		t.Errorf("Environment set without Home: %q", got)
	}
}

func TestSystemdQuoting(t *testing.T) {
	a := Autostart{Binary: "/opt/my apps/skiff%1$x", Machine: "dev", Home: "/home/a b/.skiff"}
	files, err := a.Files("linux")
	if err != nil {
		t.Fatal(err)
	}
	u := string(files[0].Content)
	if got := unitLines(t, u, "ExecStart"); len(got) != 1 || got[0] != `"/opt/my apps/skiff%%1$$x" machine start dev` {
		t.Errorf("ExecStart = %q", got)
	}
	if got := unitLines(t, u, "Environment"); len(got) != 1 || got[0] != `"SKIFF_HOME=/home/a b/.skiff"` {
		t.Errorf("Environment = %q", got)
	}
}

func TestAutostartValidates(t *testing.T) {
	for _, a := range []Autostart{
		{Binary: "skiff", Machine: "default"},
		{Binary: "/usr/bin/skiff", Machine: "Bad Name"},
		{Binary: "", Machine: "default"},
	} {
		if _, err := a.Files("linux"); err == nil {
			t.Errorf("Files(%+v) accepted", a)
		}
	}
	if _, err := (Autostart{Binary: "/usr/bin/skiff", Machine: "x"}).Files("windows"); err == nil {
		t.Error("a unix path was accepted as a Windows binary")
	}
	if _, err := (Autostart{Binary: "/usr/bin/skiff", Machine: "x"}).Files("plan9"); !errors.Is(err, ErrAutostartUnsupported) {
		t.Errorf("plan9: %v", err)
	}
}

// TestSystemdAnalyzeVerify runs systemd's own unit checker over the generated unit, and
// over a broken one to prove the check can fail.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (.ci/installer-test.sh installs it)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "skiff")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	verify := func(a Autostart, extra string) (string, error) {
		files, err := a.Files("linux")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Base(files[0].Path))
		if err := os.WriteFile(p, append(files[0].Content, extra...), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(sa, "--user", "verify", p)
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+dir, "SYSTEMD_LOG_LEVEL=warning")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := verify(Autostart{Binary: bin, Machine: "default", Home: dir + "/home with space"}, ""); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// A missing binary and an unknown directive must both be reported.
	out, err := verify(Autostart{Binary: filepath.Join(dir, "missing"), Machine: "broken"}, "Bogus=1\n")
	if err == nil || !strings.Contains(out, "not executable") {
		t.Fatalf("systemd-analyze accepted a broken unit:\n%s", out)
	}
}

// plistValue decodes the plist subset we generate into Go values.
func plistValue(d *xml.Decoder, start xml.StartElement) (any, error) {
	switch start.Name.Local {
	case "string", "key":
		var s string
		err := d.DecodeElement(&s, &start)
		return s, err
	case "true", "false":
		return start.Name.Local == "true", d.Skip()
	case "array":
		var out []any
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, err
			}
			switch tt := tok.(type) {
			case xml.StartElement:
				v, err := plistValue(d, tt)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			case xml.EndElement:
				return out, nil
			}
		}
	case "dict":
		out := map[string]any{}
		var key string
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, err
			}
			switch tt := tok.(type) {
			case xml.StartElement:
				v, err := plistValue(d, tt)
				if err != nil {
					return nil, err
				}
				if tt.Name.Local == "key" {
					key = v.(string)
				} else {
					out[key] = v
				}
			case xml.EndElement:
				return out, nil
			}
		}
	}
	return nil, errors.New("unexpected plist element " + start.Name.Local)
}

// parsePlist checks the document shape (declaration, DOCTYPE, <plist>) and returns the top dict.
func parsePlist(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var sawDoctype bool
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("plist is not well-formed XML: %v", err)
		}
		switch tt := tok.(type) {
		case xml.Directive:
			if strings.HasPrefix(string(tt), `DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN"`) {
				sawDoctype = true
			}
		case xml.StartElement:
			if tt.Name.Local != "plist" || !sawDoctype {
				t.Fatalf("root %q, doctype seen %v", tt.Name.Local, sawDoctype)
			}
			var dict map[string]any
			for dict == nil {
				tok, err := d.Token()
				if err != nil {
					t.Fatal(err)
				}
				if se, ok := tok.(xml.StartElement); ok {
					v, err := plistValue(d, se)
					if err != nil {
						t.Fatal(err)
					}
					dict, _ = v.(map[string]any)
					if dict == nil {
						t.Fatalf("top-level value is %T, want dict", v)
					}
				}
			}
			// The rest must still be well-formed.
			for {
				if _, err := d.Token(); err == io.EOF {
					return dict
				} else if err != nil {
					t.Fatalf("plist is not well-formed XML: %v", err)
				}
			}
		}
	}
}

func TestLaunchdPlist(t *testing.T) {
	a := Autostart{Binary: "/opt/homebrew/bin/skiff", Machine: "dev", Home: "/Users/a&b/skiff"}
	files, err := a.Files("darwin")
	if err != nil {
		t.Fatal(err)
	}
	if files[0].Path != "Library/LaunchAgents/dev.skiff.machine.dev.plist" {
		t.Errorf("path %q", files[0].Path)
	}
	d := parsePlist(t, files[0].Content)
	if d["Label"] != "dev.skiff.machine.dev" {
		t.Errorf("Label = %v", d["Label"])
	}
	want := []any{"/opt/homebrew/bin/skiff", "machine", "start", "dev"}
	if !reflect.DeepEqual(d["ProgramArguments"], want) {
		t.Errorf("ProgramArguments = %v", d["ProgramArguments"])
	}
	if d["RunAtLoad"] != true || d["KeepAlive"] != false || d["AbandonProcessGroup"] != true {
		t.Errorf("RunAtLoad/KeepAlive/AbandonProcessGroup = %v/%v/%v", d["RunAtLoad"], d["KeepAlive"], d["AbandonProcessGroup"])
	}
	env, _ := d["EnvironmentVariables"].(map[string]any)
	if env["SKIFF_HOME"] != "/Users/a&b/skiff" || !strings.Contains(env["PATH"].(string), "/opt/homebrew/bin") {
		t.Errorf("EnvironmentVariables = %v", env)
	}
}

// decodeTask undoes taskXML's UTF-16LE encoding and parses the task.
type taskDoc struct {
	XMLName  xml.Name `xml:"Task"`
	Triggers struct {
		Logon []struct {
			Enabled string `xml:"Enabled"`
			UserID  string `xml:"UserId"`
		} `xml:"LogonTrigger"`
	} `xml:"Triggers"`
	Principal struct {
		LogonType string `xml:"LogonType"`
		RunLevel  string `xml:"RunLevel"`
	} `xml:"Principals>Principal"`
	Exec []struct {
		Command   string `xml:"Command"`
		Arguments string `xml:"Arguments"`
	} `xml:"Actions>Exec"`
	URI string `xml:"RegistrationInfo>URI"`
}

func decodeTask(t *testing.T, b []byte) taskDoc {
	t.Helper()
	if len(b) < 2 || b[0] != 0xFF || b[1] != 0xFE || len(b)%2 != 0 {
		t.Fatalf("task XML is not UTF-16LE with a BOM")
	}
	u := make([]uint16, 0, len(b)/2-1)
	for i := 2; i < len(b); i += 2 {
		u = append(u, uint16(b[i])|uint16(b[i+1])<<8)
	}
	text := string(utf16.Decode(u))
	if !strings.HasPrefix(text, `<?xml version="1.0" encoding="UTF-16"?>`) {
		t.Fatalf("declaration: %.60q", text)
	}
	d := xml.NewDecoder(strings.NewReader(text))
	d.Strict = true
	// Already decoded above; the declaration's UTF-16 label is accurate for the file.
	d.CharsetReader = func(label string, r io.Reader) (io.Reader, error) { return r, nil }
	var doc taskDoc
	if err := d.Decode(&doc); err != nil {
		t.Fatalf("task XML is not well-formed: %v", err)
	}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return doc
		}
		if cd, ok := tok.(xml.CharData); err != nil || !ok || strings.TrimSpace(string(cd)) != "" {
			t.Fatalf("trailing content after </Task>: %v %v", tok, err)
		}
	}
}

func TestTaskSchedulerXML(t *testing.T) {
	a := Autostart{Binary: `C:\Program Files\Skiff\skiff.exe`, Machine: "default", User: `CORP\ann`}
	files, err := a.Files("windows")
	if err != nil {
		t.Fatal(err)
	}
	doc := decodeTask(t, files[0].Content)
	if doc.XMLName.Space != taskNS {
		t.Errorf("namespace %q", doc.XMLName.Space)
	}
	if len(doc.Triggers.Logon) != 1 || doc.Triggers.Logon[0].UserID != `CORP\ann` || doc.Triggers.Logon[0].Enabled != "true" {
		t.Errorf("LogonTrigger = %+v", doc.Triggers.Logon)
	}
	if doc.Principal.LogonType != "InteractiveToken" || doc.Principal.RunLevel != "LeastPrivilege" {
		t.Errorf("Principal = %+v", doc.Principal)
	}
	if len(doc.Exec) != 1 || doc.Exec[0].Command != `C:\Program Files\Skiff\skiff.exe` || doc.Exec[0].Arguments != "machine start default" {
		t.Errorf("Exec = %+v", doc.Exec)
	}
	if doc.URI != `\Skiff\machine-default` {
		t.Errorf("URI = %q", doc.URI)
	}
}

func TestSystemdEnableDisable(t *testing.T) {
	ctx := context.Background()
	cfg := t.TempDir()
	r := &hostenvtest.Runner{}
	a := Autostart{Binary: "/usr/bin/skiff", Machine: "default"}
	o := AutostartOptions{Runner: r, ConfigDir: cfg}
	if err := (systemdDriver{}).enable(ctx, a, o); err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(cfg, "systemd", "user", "skiff-machine-default.service")
	if b, err := os.ReadFile(unit); err != nil || !strings.Contains(string(b), "ExecStart=/usr/bin/skiff machine start default") {
		t.Fatalf("unit: %v\n%s", err, b)
	}
	want := []string{"systemctl --user daemon-reload", "systemctl --user enable skiff-machine-default.service"}
	if !reflect.DeepEqual(r.Calls, want) {
		t.Errorf("enable ran %q, want %q", r.Calls, want)
	}
	r.Calls = nil
	if err := (systemdDriver{}).disable(ctx, a, o); err != nil {
		t.Fatal(err)
	}
	want = []string{"systemctl --user disable skiff-machine-default.service", "systemctl --user daemon-reload"}
	if !reflect.DeepEqual(r.Calls, want) {
		t.Errorf("disable ran %q, want %q", r.Calls, want)
	}
	if _, err := os.Stat(unit); !os.IsNotExist(err) {
		t.Errorf("unit still there: %v", err)
	}
	// Disabling again is a no-op, and a failing systemctl is reported.
	r.Calls = nil
	if err := (systemdDriver{}).disable(ctx, a, o); err != nil || len(r.Calls) != 0 {
		t.Errorf("second disable: %v %q", err, r.Calls)
	}
	r.Fail = map[string]error{"systemctl --user daemon-reload": errors.New("no bus")}
	if err := (systemdDriver{}).enable(ctx, a, o); err == nil || !strings.Contains(err.Error(), "no bus") {
		t.Errorf("enable with a dead manager: %v", err)
	}
}

func TestLaunchdEnableDisable(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	r := &hostenvtest.Runner{Fail: map[string]error{"launchctl bootout": errors.New("Could not find service")}}
	a := Autostart{Binary: "/opt/homebrew/bin/skiff", Machine: "default"}
	o := AutostartOptions{Runner: r, HomeDir: home, UID: 501}
	if err := (launchdDriver{}).enable(ctx, a, o); err != nil {
		t.Fatal(err)
	}
	plist := filepath.Join(home, "Library", "LaunchAgents", "dev.skiff.machine.default.plist")
	want := []string{
		"launchctl bootout gui/501/dev.skiff.machine.default",
		"launchctl bootstrap gui/501 " + plist,
	}
	if !reflect.DeepEqual(r.Calls, want) {
		t.Errorf("enable ran %q, want %q", r.Calls, want)
	}
	if on, _ := (launchdDriver{}).enabled(ctx, a, o); !on {
		t.Error("not enabled after enable")
	}
	r.Calls = nil
	if err := (launchdDriver{}).disable(ctx, a, o); err != nil {
		t.Fatal(err)
	}
	if want := []string{"launchctl bootout gui/501/dev.skiff.machine.default"}; !reflect.DeepEqual(r.Calls, want) {
		t.Errorf("disable ran %q, want %q", r.Calls, want)
	}
	if _, err := os.Stat(plist); !os.IsNotExist(err) {
		t.Errorf("plist still there: %v", err)
	}
	r.Fail = map[string]error{"launchctl bootstrap": errors.New("Bootstrap failed: 5: Input/output error")}
	if err := (launchdDriver{}).enable(ctx, a, o); err == nil {
		t.Error("a failing bootstrap was not reported")
	}
}

func TestSchtasksEnableDisable(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	var handed []byte
	r := &hostenvtest.Runner{}
	r.Hook = func(name string, args []string) {
		if len(args) > 4 && args[0] == "/Create" {
			handed, _ = os.ReadFile(args[4])
		}
	}
	a := Autostart{Binary: `C:\Skiff\skiff.exe`, Machine: "default", User: `PC\bob`}
	o := AutostartOptions{Runner: r, TempDir: tmp}
	if err := (schtasksDriver{}).enable(ctx, a, o); err != nil {
		t.Fatal(err)
	}
	if len(r.Calls) != 1 || !strings.HasPrefix(r.Calls[0], `schtasks /Create /TN \Skiff\machine-default /XML `+tmp) || !strings.HasSuffix(r.Calls[0], " /F") {
		t.Fatalf("enable ran %q", r.Calls)
	}
	if doc := decodeTask(t, handed); doc.Triggers.Logon[0].UserID != `PC\bob` {
		t.Errorf("handed task for %q", doc.Triggers.Logon[0].UserID)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary task file left behind: %v", left)
	}
	r.Calls = nil
	if err := (schtasksDriver{}).disable(ctx, a, o); err != nil {
		t.Fatal(err)
	}
	want := []string{`schtasks /Query /TN \Skiff\machine-default`, `schtasks /Delete /TN \Skiff\machine-default /F`}
	if !reflect.DeepEqual(r.Calls, want) {
		t.Errorf("disable ran %q, want %q", r.Calls, want)
	}
	// An absent task is not deleted.
	r.Calls = nil
	r.Fail = map[string]error{"schtasks /Query": errors.New("exit status 1")}
	if err := (schtasksDriver{}).disable(ctx, a, o); err != nil || len(r.Calls) != 1 {
		t.Errorf("disable of an absent task: %v %q", err, r.Calls)
	}
}
