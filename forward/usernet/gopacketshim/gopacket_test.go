package gopacket

import "testing"

func TestPacketString(t *testing.T) {
	f := []byte{0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xee, 0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd, 0x08, 0x06, 0, 1}
	p := NewPacket(f, LayerType(1), Default)
	f[0] = 0 // the packet keeps its own copy
	if got, want := p.String(), "Ethernet 5a:94:ef:e4:0c:dd > 5a:94:ef:e4:0c:ee type 0x0806, 16 bytes"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := NewPacket(f[:3], LayerType(1), Default).String(); got != "frame of 3 bytes (shorter than an Ethernet header)" {
		t.Errorf("short frame: %q", got)
	}
}
