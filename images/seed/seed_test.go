package seed

import (
	"bytes"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	in := &Seed{Hostname: "m1", Engine: "podman", Secret: []byte{1, 2, 3}, AgentPort: 1024,
		Network: Network{Address: "192.168.127.2/24", Gateway: "192.168.127.1", DNS: []string{"192.168.127.1"}, MTU: 1500},
		Shares:  []Share{{Tag: "s0", GuestPath: "/home/u", Type: "9p", ReadOnly: true}}}
	b, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != Size {
		t.Fatalf("seed disk is %d bytes, want %d", len(b), Size)
	}
	out, err := Unmarshal(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed the seed:\n in %+v\nout %+v", in, out)
	}
}

func TestRejectsGarbage(t *testing.T) {
	if _, err := Unmarshal(bytes.NewReader(make([]byte, 64))); err == nil {
		t.Fatal("a zeroed disk was accepted as a seed")
	}
	b, _ := (&Seed{Hostname: "x"}).Marshal()
	b[len(magic)+3] = 0xff // length beyond the JSON
	if _, err := Unmarshal(bytes.NewReader(b)); err == nil {
		t.Fatal("a seed with a bad length was accepted")
	}
}
