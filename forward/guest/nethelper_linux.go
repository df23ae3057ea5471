package guest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/songgao/water"
	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/transport"
)

// NetHelperOptions configure the frames-over-vsock network of a VM without a NIC.
type NetHelperOptions struct {
	// CID and Port are where the host's user-mode network listens (HostCID, 1025).
	CID, Port uint32
	// Dial replaces the vsock dial (tests; a stand-in's other medium). Optional.
	Dial transport.RawDialer
	// Secret is the machine's: the host serves frames only to a guest that proves it.
	Secret []byte
	// Iface names the TAP device made for the network; default "eth0".
	Iface string
	MAC   string
	// Configure gives the device its address, MTU and routes once it exists.
	Configure func(iface string) error
	Logf      func(string, ...any)
}

// RunNetHelper makes a TAP device and carries its Ethernet frames to the host's user-mode
// network over an authenticated vsock stream, reconnecting while ctx lasts. It returns
// once the device is configured and the first stream is up, or with the reason it could
// not be: the rest runs until ctx ends.
func RunNetHelper(ctx context.Context, o NetHelperOptions) error {
	if o.Iface == "" {
		o.Iface = "eth0"
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	dial := o.Dial
	if dial == nil {
		dial = transport.VsockDialer(o.CID, o.Port)
	}
	host := &transport.Client{Raw: dial, Secret: o.Secret}
	// The host first: a refused stream leaves no device behind.
	conn, err := host.Dial(ctx, forward.HostServiceNetwork)
	if err != nil {
		return fmt.Errorf("network helper: host network on vsock %d:%d: %w", o.CID, o.Port, err)
	}
	tap, err := water.New(water.Config{DeviceType: water.TAP, PlatformSpecificParams: water.PlatformSpecificParams{Name: o.Iface}})
	if err != nil {
		conn.Close()
		return fmt.Errorf("network helper: tap %s: %w", o.Iface, err)
	}
	if o.MAC != "" {
		if err := setMAC(o.Iface, o.MAC); err != nil {
			tap.Close()
			conn.Close()
			return fmt.Errorf("network helper: %w", err)
		}
	}
	if o.Configure != nil {
		if err := o.Configure(o.Iface); err != nil {
			tap.Close()
			conn.Close()
			return fmt.Errorf("network helper: %w", err)
		}
	}
	// The stream frames go out on; each one published is a variable of its own, never
	// written again, so that sendFrames reads it without a lock.
	var cur atomic.Pointer[net.Conn]
	go sendFrames(tap, &cur)
	go func() {
		defer tap.Close()
		// c is this iteration's own (Go 1.22 loop variables): the AfterFunc reads only it.
		for c := conn; c != nil; c = redial(ctx, host) {
			cur.Store(&c)
			stop := context.AfterFunc(ctx, func() { c.Close() })
			err := readFrames(c, tap)
			stop()
			cur.Store(nil)
			c.Close()
			if ctx.Err() == nil {
				o.Logf("network helper: stream to the host ended (%v); reconnecting", err)
			}
		}
	}()
	return nil
}

// redial opens the network stream to the host again, every 200 ms until it takes or ctx
// ends (nil).
func redial(ctx context.Context, host transport.Dialer) net.Conn {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
		if c, err := host.Dial(ctx, forward.HostServiceNetwork); err == nil {
			return c
		}
	}
}

// maxFrame bounds one frame: the largest MTU Skiff uses plus the Ethernet header.
const maxFrame = 65536 + 14

// sendFrames is the one reader of the TAP device (one read is one frame): it writes each
// frame, length first, to the current stream, and drops it while there is none, as a
// wire would. It ends when the device is closed.
func sendFrames(tap io.Reader, cur *atomic.Pointer[net.Conn]) {
	buf := make([]byte, 4+maxFrame)
	for {
		n, err := tap.Read(buf[4:])
		if err != nil {
			return
		}
		c := cur.Load()
		if c == nil {
			continue
		}
		binary.BigEndian.PutUint32(buf, uint32(n))
		if _, err := (*c).Write(buf[:4+n]); err != nil {
			(*c).Close() // the receiving side notices and reconnects
		}
	}
}

// readFrames writes each length-prefixed frame from r to w.
func readFrames(r io.Reader, w io.Writer) error {
	head := make([]byte, 4)
	buf := make([]byte, maxFrame)
	for {
		if _, err := io.ReadFull(r, head); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(head)
		if n > maxFrame {
			return fmt.Errorf("frame of %d bytes from the host", n)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return err
		}
		if _, err := w.Write(buf[:n]); err != nil && !errors.Is(err, unix.EIO) {
			// EIO: the device is down for a moment; the frame is lost as on a wire.
			return fmt.Errorf("tap: %w", err)
		}
	}
}

// setMAC gives iface the hardware address mac (the address the host's DHCP lease knows).
func setMAC(iface, mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("MAC address %q: not a 6-byte address", mac)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var req struct {
		name   [unix.IFNAMSIZ]byte
		family uint16
		data   [14]byte
		_      [8]byte
	}
	copy(req.name[:], iface)
	req.family = unix.ARPHRD_ETHER
	copy(req.data[:], hw)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCSIFHWADDR, uintptr(unsafe.Pointer(&req))); e != 0 {
		return fmt.Errorf("set %s's MAC address: %w", iface, e)
	}
	return nil
}
