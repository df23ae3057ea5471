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

// FuzzUnmarshal: whatever the seed disk holds, the guest's reader fails cleanly or reads
// a seed that writes back to the same seed.
func FuzzUnmarshal(f *testing.F) {
	good, err := (&Seed{Hostname: "dev", Secret: []byte("s"), Shares: []Share{{Tag: "skiff0", GuestPath: "/mnt"}}}).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:20])
	f.Add([]byte(magic + "\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Unmarshal(bytes.NewReader(b))
		if err != nil {
			return
		}
		again, err := s.Marshal()
		if err != nil {
			return // more than fits a seed disk: the host never writes one
		}
		s2, err := Unmarshal(bytes.NewReader(again))
		if err != nil || !reflect.DeepEqual(s, s2) {
			t.Fatalf("a seed does not read back: %v\n%+v\n%+v", err, s, s2)
		}
	})
}
