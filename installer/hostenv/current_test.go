package hostenv

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// switchEnv is a fresh docker config dir and switch record, with DOCKER_HOST and
// DOCKER_CONTEXT cleared as in a plain shell.
func switchEnv(t *testing.T) (cfgDir, record string) {
	t.Helper()
	cfgDir = t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfgDir)
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("DOCKER_CONTEXT", "")
	os.Unsetenv("DOCKER_HOST")
	os.Unsetenv("DOCKER_CONTEXT")
	return cfgDir, filepath.Join(t.TempDir(), "docker-context.json")
}

func current(t *testing.T) string {
	t.Helper()
	c, err := CurrentContext()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// liveEngine serves GET /_ping on a real unix socket and returns its docker host.
func liveEngine(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "engine.sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("OK")) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "unix://" + p
}

// answersAt makes the default endpoint host; others are asked for real.
func answersAt(defaultHost string) func(context.Context, string) bool {
	return func(ctx context.Context, h string) bool {
		if h == DefaultHost() {
			h = defaultHost
		}
		return hostAnswers(ctx, h)
	}
}

func TestSwitchFromDeadDefaultAndBack(t *testing.T) {
	cfgDir, rec := switchEnv(t)
	// Settings the user has in config.json survive both rewrites.
	os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(`{"auths":{"r.example":{"auth":"eA=="}},"credsStore":"pass"}`), 0o600)
	if err := CreateContext("default", "/tmp/x.sock"); err != nil {
		t.Fatal(err)
	}
	dead := "unix://" + filepath.Join(t.TempDir(), "nothing.sock")
	res, err := SwitchContext(context.Background(), SwitchOptions{Machine: "default", Record: rec, Answers: answersAt(dead)})
	if err != nil || !res.Switched || res.Previous != "default" {
		t.Fatalf("switch from a default without an engine: %+v, %v", res, err)
	}
	if c := current(t); c != "skiff" {
		t.Fatalf("current context %q, want skiff", c)
	}
	st, _ := os.Stat(filepath.Join(cfgDir, "config.json"))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("config.json mode %v, want 0600", st.Mode().Perm())
	}
	// Switching again is a no-op.
	if res, _ := SwitchContext(context.Background(), SwitchOptions{Machine: "default", Record: rec, Answers: answersAt(dead)}); res.Switched || res.Kept {
		t.Fatalf("second switch did something: %+v", res)
	}
	got, err := RestoreContext("default", rec)
	if err != nil || got != "default" {
		t.Fatalf("restore: %q, %v", got, err)
	}
	if c := current(t); c != "default" {
		t.Fatalf("current context %q after restore, want default", c)
	}
	var cfg map[string]json.RawMessage
	b, _ := os.ReadFile(filepath.Join(cfgDir, "config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil || cfg["auths"] == nil || cfg["credsStore"] == nil || cfg["currentContext"] != nil {
		t.Fatalf("config.json lost the user's settings or kept a current context: %s", b)
	}
	if _, err := os.Stat(rec); !os.IsNotExist(err) {
		t.Fatalf("the switch record outlived the restore: %v", err)
	}
}

func TestSwitchKeepsLiveDefaultEngine(t *testing.T) {
	_, rec := switchEnv(t)
	res, err := SwitchContext(context.Background(), SwitchOptions{Machine: "default", Record: rec, Answers: answersAt(liveEngine(t))})
	if err != nil || res.Switched || !res.Kept || !strings.Contains(res.Why, "an engine answers") {
		t.Fatalf("a live native engine was not kept: %+v, %v", res, err)
	}
	if c := current(t); c != "default" {
		t.Fatalf("current context %q, want default", c)
	}
	// Asked for, the switch happens anyway, and restore puts default back.
	res, err = SwitchContext(context.Background(), SwitchOptions{Machine: "default", Record: rec, Asked: true, Answers: answersAt(liveEngine(t))})
	if err != nil || !res.Switched {
		t.Fatalf("asked switch: %+v, %v", res, err)
	}
	if got, _ := RestoreContext("default", rec); got != "default" {
		t.Fatalf("restore gave %q", got)
	}
}

func TestSwitchKeepsUsersChoice(t *testing.T) {
	_, rec := switchEnv(t)
	if err := UseContext("mine"); err != nil {
		t.Fatal(err)
	}
	res, err := SwitchContext(context.Background(), SwitchOptions{Machine: "dev", Record: rec, Answers: func(context.Context, string) bool { return false }})
	if err != nil || res.Switched || !strings.Contains(res.Why, `"mine", which you chose`) {
		t.Fatalf("a context the user chose was not kept: %+v, %v", res, err)
	}
	t.Setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
	UseContext(DefaultContext)
	res, _ = SwitchContext(context.Background(), SwitchOptions{Machine: "dev", Record: rec, Answers: func(context.Context, string) bool { return false }})
	if res.Switched || !strings.Contains(res.Why, "DOCKER_HOST=tcp://10.0.0.1:2375") {
		t.Fatalf("DOCKER_HOST was ignored: %+v", res)
	}
}

// A second machine takes over from a first one Skiff switched to only when the first is
// gone; stopping the second then restores what the user had before either.
func TestSwitchBetweenMachines(t *testing.T) {
	_, rec := switchEnv(t)
	aSock := strings.TrimPrefix(liveEngine(t), "unix://")
	CreateContext("a", aSock)
	CreateContext("b", "/nonexistent/b.sock")
	none := func(context.Context, string) bool { return false }
	if res, _ := SwitchContext(context.Background(), SwitchOptions{Machine: "a", Record: rec, Answers: answersAt("unix:///nonexistent/default.sock")}); !res.Switched {
		t.Fatalf("a: %+v", res)
	}
	res, _ := SwitchContext(context.Background(), SwitchOptions{Machine: "b", Record: rec, Answers: hostAnswers})
	if res.Switched || !strings.Contains(res.Why, "a running Skiff machine") {
		t.Fatalf("b replaced a running machine's context: %+v", res)
	}
	res, _ = SwitchContext(context.Background(), SwitchOptions{Machine: "b", Record: rec, Answers: none})
	if !res.Switched || res.Previous != "skiff-a" {
		t.Fatalf("b did not take over from a stopped a: %+v", res)
	}
	if got, _ := RestoreContext("a", rec); got != "" {
		t.Fatalf("stopping a touched b's switch: %q", got)
	}
	if got, _ := RestoreContext("b", rec); got != "default" {
		t.Fatalf("stopping b restored %q, want default", got)
	}
}

// A user who switched elsewhere after Skiff did keeps their choice when the machine stops.
func TestRestoreLeavesLaterChoice(t *testing.T) {
	_, rec := switchEnv(t)
	if res, _ := SwitchContext(context.Background(), SwitchOptions{Machine: "default", Record: rec, Answers: func(context.Context, string) bool { return false }}); !res.Switched {
		t.Fatal("no switch")
	}
	UseContext("theirs")
	if got, err := RestoreContext("default", rec); got != "" || err != nil {
		t.Fatalf("restore replaced a later choice: %q, %v", got, err)
	}
	if c := current(t); c != "theirs" {
		t.Fatalf("current %q, want theirs", c)
	}
}

func TestBrokenDockerConfigIsLeftAlone(t *testing.T) {
	cfgDir, rec := switchEnv(t)
	bad := []byte(`{"auths": {`)
	os.WriteFile(filepath.Join(cfgDir, "config.json"), bad, 0o600)
	_, err := SwitchContext(context.Background(), SwitchOptions{Machine: "default", Record: rec, Answers: func(context.Context, string) bool { return false }})
	if err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(cfgDir, "config.json")); string(b) != string(bad) {
		t.Fatalf("a broken config.json was rewritten: %s", b)
	}
}
