package winexec_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/vmm/winexec"
	"github.com/skiff-dev/skiff/vmm/winexec/winexectest"
)

func TestText(t *testing.T) {
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"utf16 no bom":   {winexectest.UTF16("docker-desktop\nskiff-default\n"), "docker-desktop\nskiff-default"},
		"utf16 bom":      {append([]byte{0xff, 0xfe}, winexectest.UTF16("Ubuntu")...), "Ubuntu"},
		"utf16 nonascii": {winexectest.UTF16("Der Vorgang wurde erfolgreich beendet. Grüße"), "Der Vorgang wurde erfolgreich beendet. Grüße"},
		"utf8":           {[]byte("Running\r\n"), "Running"},
		"utf8 bom":       {[]byte("\xef\xbb\xbfOff\n"), "Off"},
		"empty":          {nil, ""},
		"one byte":       {[]byte("x"), "x"},
	} {
		if got := winexec.Text(tc.in); got != tc.want {
			t.Errorf("%s: Text = %q, want %q", name, got, tc.want)
		}
	}
}

func TestPSQuote(t *testing.T) {
	if got := winexec.PSQuote(`C:\Users\O'Brien\skiff`); got != `'C:\Users\O''Brien\skiff'` {
		t.Fatalf("PSQuote = %s", got)
	}
}

func TestServiceGUID(t *testing.T) {
	// The same value go-winio's VsockServiceID(1024) gives.
	if got := winexec.ServiceGUID(1024); got != "00000400-facb-11e6-bd58-64006a7986d3" {
		t.Fatalf("ServiceGUID(1024) = %s", got)
	}
}

func TestRegisterServices(t *testing.T) {
	svcs := []winexec.Service{{Port: 1024, Name: "Skiff transport"}, {Port: 1025, Name: "Skiff network"}}
	reg := &winexectest.Registry{DenyWrites: true}
	err := winexec.RegisterServices(context.Background(), reg, svcs, "skiff system install")
	if !errors.Is(err, winexec.ErrNeedAdmin) || !strings.Contains(err.Error(), "Run as administrator") ||
		!strings.Contains(err.Error(), "skiff system install") {
		t.Fatalf("non-admin registration: %v", err)
	}
	reg.DenyWrites = false
	if err := winexec.RegisterServices(context.Background(), reg, svcs, "x"); err != nil {
		t.Fatal(err)
	}
	v, ok := reg.Value(winexec.GCSRoot+`\00000401-facb-11e6-bd58-64006a7986d3`, "ElementName")
	if !ok || v != "Skiff network" {
		t.Fatalf("registry entry = %q, %v", v, ok)
	}
	// Once registered, nothing more is written: a non-admin re-run passes.
	reg.DenyWrites = true
	if err := winexec.RegisterServices(context.Background(), reg, svcs, "x"); err != nil {
		t.Fatalf("re-run after install: %v", err)
	}
}
