// Package gopacket stands in for github.com/google/gopacket in Skiff's builds (the
// replace in Skiff's go.mod). gvisor-tap-vsock's switch (pkg/tap) links gopacket only to
// print frames when its debug flag is on, which Skiff never sets, and the tables
// gopacket/layers fills at start-up cost the host agent 9.6 MB of its resident memory
// (7.1 MB anonymous), most of the agent's. This is the part of the API pkg/tap calls; a
// frame prints as its Ethernet header.
package gopacket

import (
	"encoding/binary"
	"fmt"
	"net"
)

// Decoder names the first layer of a frame.
type Decoder interface{ isDecoder() }

// LayerType is a Decoder by its number.
type LayerType int64

func (LayerType) isDecoder() {}

// DecodeOptions are accepted and have no effect.
type DecodeOptions struct {
	Lazy, NoCopy bool
}

// Default is the zero DecodeOptions.
var Default = DecodeOptions{}

// Packet is a frame that prints itself.
type Packet interface {
	String() string
	Data() []byte
}

type frame []byte

// NewPacket keeps a copy of data.
func NewPacket(data []byte, _ Decoder, _ DecodeOptions) Packet {
	return frame(append([]byte(nil), data...))
}

func (f frame) Data() []byte { return f }

func (f frame) String() string {
	if len(f) < 14 {
		return fmt.Sprintf("frame of %d bytes (shorter than an Ethernet header)", len(f))
	}
	return fmt.Sprintf("Ethernet %s > %s type 0x%04x, %d bytes", net.HardwareAddr(f[6:12]), net.HardwareAddr(f[0:6]),
		binary.BigEndian.Uint16(f[12:14]), len(f))
}
