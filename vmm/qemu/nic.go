package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/skiff-dev/skiff/vmm"
)

// nic is the host end of the VM's network card. By default QEMU connects to a stream
// socket (-netdev stream, 4-byte length before each frame); with VZDevices it gets one
// end of a datagram socket pair, one frame per datagram, which is how vz hands frames to
// the user-mode network (vmm.Network.ServeDatagram).
type nic struct {
	ln    net.Listener // stream: QEMU connects here
	group net.Listener // stream: QEMU's NIC on the machine's network group, if it has one
	host  net.Conn     // dgram: the user-mode network's end
	guest *os.File     // dgram: QEMU's end, inherited
}

// dgramFD is QEMU's descriptor for its end of the datagram pair: after the guest RAM's.
func dgramFD() int {
	if sharedRAM {
		return 4
	}
	return 3
}

// netdevArg is the -netdev for the VM's NIC.
func (b *Backend) netdevArg(netSock string) string {
	if b.VZDevices {
		return "dgram,id=net0,local.type=fd,local.str=" + strconv.Itoa(dgramFD())
	}
	return "stream,id=net0,server=off,addr.type=unix,addr.path=" + netSock
}

// consoleArgs attach the serial log: the first UART (ttyS0, ttyAMA0), or with VZDevices a
// virtio console (hvc0), the only console vz has.
func (b *Backend) consoleArgs(cfg vmm.Config) []string {
	a := []string{"-chardev", "file,id=serial0,path=" + cfg.SerialLog}
	if b.VZDevices {
		return append(a, "-device", "virtio-serial-pci,id=vser0", "-device", "virtconsole,chardev=serial0")
	}
	return append(a, "-serial", "chardev:serial0")
}

// cmdline is the guest's kernel command line on this backend.
func (b *Backend) cmdline(cfg vmm.Config, accel string) string {
	c := cmdlineFor(cfg.Cmdline, accel)
	if b.VZDevices {
		c = vmm.WithConsole(c, "hvc0")
	}
	return c
}

// groupArgs are the second NIC's, on the machine's network group (vmm.GroupNIC).
func groupArgs(cfg vmm.Config) []string {
	if cfg.Group == nil {
		return nil
	}
	return []string{
		"-netdev", "stream,id=net1,server=off,addr.type=unix,addr.path=" + groupSock(cfg),
		"-device", "virtio-net-pci,netdev=net1,mac=" + cfg.Group.MAC + ",mrg_rxbuf=on,romfile=",
	}
}

func groupSock(cfg vmm.Config) string { return filepath.Join(cfg.RunDir, "group.sock") }

func (b *Backend) openNIC(cfg vmm.Config, netSock string) (*nic, error) {
	var group net.Listener
	if cfg.Group != nil {
		if b.VZDevices {
			return nil, errors.New("qemu: a network group is not carried on vz's datagram NIC yet")
		}
		os.Remove(groupSock(cfg))
		l, err := net.Listen("unix", groupSock(cfg))
		if err != nil {
			return nil, fmt.Errorf("qemu: network group socket: %w", err)
		}
		os.Chmod(groupSock(cfg), 0o600)
		group = l
	}
	n, err := b.openMainNIC(netSock)
	if err != nil {
		if group != nil {
			group.Close()
		}
		return nil, err
	}
	n.group = group
	return n, nil
}

func (b *Backend) openMainNIC(netSock string) (*nic, error) {
	if b.VZDevices {
		host, guest, err := datagramPair()
		if err != nil {
			return nil, fmt.Errorf("qemu: network socket pair: %w", err)
		}
		return &nic{host: host, guest: guest}, nil
	}
	os.Remove(netSock)
	ln, err := net.Listen("unix", netSock)
	if err != nil {
		return nil, fmt.Errorf("qemu: network socket: %w", err)
	}
	os.Chmod(netSock, 0o600)
	return &nic{ln: ln}, nil
}

// attach serves the NIC once QEMU runs: at once for a datagram pair, or when QEMU has
// connected to the stream socket, which it does as it initialises the card.
func (n *nic) attach(cfg vmm.Config, exited <-chan struct{}) error {
	if err := n.attachMain(cfg.Network, exited); err != nil {
		return err
	}
	if n.group == nil {
		return nil
	}
	return serveWhenConnected(n.group, cfg.Group.Network, exited, "network group")
}

func (n *nic) attachMain(network vmm.Network, exited <-chan struct{}) error {
	if n.host != nil {
		n.guest.Close() // QEMU has its copy
		go network.ServeDatagram(context.Background(), n.host)
		return nil
	}
	return serveWhenConnected(n.ln, network, exited, "network")
}

// serveWhenConnected serves the stream QEMU opens on ln, once it has.
func serveWhenConnected(ln net.Listener, network vmm.Network, exited <-chan struct{}, what string) error {
	connCh := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err == nil {
			connCh <- c
		}
	}()
	select {
	case c := <-connCh:
		go network.ServeStream(context.Background(), c)
		return nil
	case <-exited:
		return errExited
	case <-time.After(30 * time.Second):
		return fmt.Errorf("qemu: the VM did not attach to the %s within 30s", what)
	}
}

// errExited tells launch that QEMU ended before its NIC was served; the VM's own error
// says why.
var errExited = errors.New("qemu exited")

// Close releases the host's end once QEMU has gone (or never started).
func (n *nic) Close() {
	if n.ln != nil {
		n.ln.Close()
	}
	if n.group != nil {
		n.group.Close()
	}
	if n.guest != nil {
		n.guest.Close()
	}
	if n.host != nil {
		n.host.Close()
	}
}
