// Package seed is the per-machine boot configuration the host hands the guest on a small
// read-only disk. It carries the secrets (transport secret, SSH keys), so the image itself
// holds none and can be shared by every machine.
package seed

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

const (
	magic = "SKIFFSEED1\n"
	// Size is the fixed size of the seed disk; block devices want whole sectors.
	Size = 1 << 20
)

// Network is the guest's static address on the user-mode network.
type Network struct {
	Address string   `json:"address"` // CIDR, e.g. 192.168.127.2/24
	Gateway string   `json:"gateway"`
	DNS     []string `json:"dns"`
	MTU     int      `json:"mtu"`
	// VsockPort, when set, says the VM has no NIC: the guest's frames go to this host
	// vsock port (Hyper-V), length-prefixed on an authenticated stream.
	VsockPort uint32 `json:"vsockPort,omitempty"`
}

// GroupNetwork is the guest's second NIC, on the network it shares with the other
// machines of its group: found by its MAC, given Address, and no gateway.
type GroupNetwork struct {
	MAC     string `json:"mac"`
	Address string `json:"address"` // CIDR
	MTU     int    `json:"mtu"`
}

// Share is a host folder the guest mounts.
type Share struct {
	Tag       string `json:"tag"`
	GuestPath string `json:"guestPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	// Type is "9p" (virtio-9p), "virtiofs" or "9p-transport" (the Go 9p server over the
	// host<->guest transport, mounted with trans=fd).
	Type string `json:"type"`
}

// Seed is everything the guest needs to know at boot.
type Seed struct {
	Hostname       string  `json:"hostname"`
	Engine         string  `json:"engine"`
	Secret         []byte  `json:"secret"`
	AuthorizedKeys string  `json:"authorizedKeys"`
	HostKey        string  `json:"hostKey"` // OpenSSH PEM private key, pinned on the host
	Network        Network `json:"network"`
	// Group, when set, is the machine's NIC on its network group.
	Group     *GroupNetwork `json:"group,omitempty"`
	AgentPort int           `json:"agentPort"` // guest listens here for host streams
	HostPort  int           `json:"hostPort"`  // host listens here (on the gateway) for guest streams
	// HostVsockPort, when set, is where the guest opens its streams to the host instead:
	// host vsock, for a guest that cannot reach the gateway (WSL on its own network).
	HostVsockPort uint32   `json:"hostVsockPort,omitempty"`
	VsockPort     uint32   `json:"vsockPort"` // also listen on vsock when the backend has it
	Shares        []Share  `json:"shares"`
	HostTimeNano  int64    `json:"hostTimeNano"`
	TrimInterval  int      `json:"trimIntervalSeconds"`
	Env           []string `json:"env,omitempty"`
	// Kubernetes starts the single-node control plane and kubelet from the Kubernetes
	// layer, which the host attaches beside the root.
	Kubernetes bool `json:"kubernetes,omitempty"`
}

// Marshal encodes the seed as a disk image of exactly Size bytes.
func (s *Seed) Marshal() ([]byte, error) {
	j, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	if len(magic)+4+len(j) > Size {
		return nil, fmt.Errorf("seed too large: %d bytes", len(j))
	}
	buf := make([]byte, Size)
	copy(buf, magic)
	binary.BigEndian.PutUint32(buf[len(magic):], uint32(len(j)))
	copy(buf[len(magic)+4:], j)
	return buf, nil
}

// Unmarshal decodes a seed disk.
func Unmarshal(r io.Reader) (*Seed, error) {
	head := make([]byte, len(magic)+4)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	if !bytes.Equal(head[:len(magic)], []byte(magic)) {
		return nil, errors.New("not a skiff seed disk")
	}
	n := binary.BigEndian.Uint32(head[len(magic):])
	if int(n) > Size {
		return nil, errors.New("seed length out of range")
	}
	j := make([]byte, n)
	if _, err := io.ReadFull(r, j); err != nil {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	var s Seed
	if err := json.Unmarshal(j, &s); err != nil {
		return nil, fmt.Errorf("decode seed: %w", err)
	}
	return &s, nil
}

// ReadFile reads a seed from a disk or file.
func ReadFile(path string) (*Seed, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Unmarshal(f)
}
