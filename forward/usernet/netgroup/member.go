package netgroup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Member is the host end of a machine's NIC on the group network: it carries the VM's
// frames to the switch and back, and reconnects when the switch went away (the VM's link
// stays up meanwhile; frames sent then are lost, as on a cable being replugged).
// It implements vmm.Network for QEMU's stream netdev.
type Member struct {
	// Dial connects to the group's switch, starting it when it is not running.
	Dial  func(ctx context.Context) (net.Conn, error)
	Hello Hello
	// Logf reports connections to the switch; nil discards them.
	Logf func(format string, args ...any)
}

// ErrRefused says the switch did not admit the member.
var ErrRefused = errors.New("the network group's switch refused this machine")

func (m *Member) logf(format string, args ...any) {
	if m.Logf != nil {
		m.Logf(format, args...)
	}
}

// Connect dials the switch and passes the hello.
func (m *Member) Connect(ctx context.Context) (net.Conn, error) {
	c, err := m.Dial(ctx)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var r reply
	if err = writeMsg(c, m.Hello); err == nil {
		err = readMsg(c, &r)
	}
	if err == nil && r.Error != "" {
		err = fmt.Errorf("%w: %s", ErrRefused, r.Error)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// ServeStream carries frames between the VM (length-prefixed, QEMU's -netdev stream) and
// the switch until the VM's end closes or ctx ends.
func (m *Member) ServeStream(ctx context.Context, vm net.Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer vm.Close()
	var (
		mu  sync.Mutex
		sw  net.Conn // the current switch connection, nil while there is none
		vmw sync.Mutex
	)
	go func() {
		backoff := 200 * time.Millisecond
		for ctx.Err() == nil {
			c, err := m.Connect(ctx)
			if err != nil {
				m.logf("network group: %v (retrying)", err)
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 200 * time.Millisecond
			m.logf("network group: connected to the switch")
			mu.Lock()
			sw = c
			mu.Unlock()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			for {
				f, err := readFrame(c, maxFrame)
				if err != nil {
					break
				}
				vmw.Lock()
				err = writeFrame(vm, f)
				vmw.Unlock()
				if err != nil {
					cancel()
					break
				}
			}
			stop()
			c.Close()
			mu.Lock()
			sw = nil
			mu.Unlock()
			if ctx.Err() == nil {
				m.logf("network group: lost the switch; reconnecting")
			}
		}
	}()
	go func() {
		<-ctx.Done()
		vm.Close()
	}()
	for {
		f, err := readFrame(vm, maxFrame)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		if sw != nil && writeFrame(sw, f) != nil {
			sw.Close()
		}
		mu.Unlock()
	}
}

// ServeDatagram implements vmm.Network; group NICs are served only as streams so far.
func (m *Member) ServeDatagram(ctx context.Context, conn net.Conn) error {
	conn.Close()
	return errors.New("network group: datagram NICs (vz) are not carried yet")
}

// ServeGuestStream implements vmm.Network; a guest never opens the group NIC itself.
func (m *Member) ServeGuestStream(ctx context.Context, conn net.Conn) error {
	conn.Close()
	return errors.New("network group: the group NIC is not served on guest streams")
}
