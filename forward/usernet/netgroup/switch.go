package netgroup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Switch is the group's Ethernet switch. Each admitted member is one port with one MAC;
// a frame goes to the port of its destination MAC, or to every other port when it is
// broadcast, multicast or for a MAC no member holds.
type Switch struct {
	// Admit decides whether a hello comes from a machine of the group.
	Admit func(Hello) error
	// IdleExit, when set, ends Serve once no member has been connected for that long:
	// the switch outlives any one member's stop, and goes once the group is idle.
	IdleExit time.Duration
	// Logf reports admissions and refusals; nil discards them.
	Logf func(format string, args ...any)

	mu    sync.Mutex
	ports map[[6]byte]*port
	empty chan struct{} // signalled when the last port goes
}

type port struct {
	conn net.Conn
	mac  [6]byte
	name string
	out  chan []byte
	once sync.Once
}

func (p *port) close() { p.once.Do(func() { p.conn.Close() }) }

func (s *Switch) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Serve runs the switch on l until ctx ends, l fails, or the group was idle IdleExit long.
func (s *Switch) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	s.ports = map[[6]byte]*port{}
	s.empty = make(chan struct{}, 1)
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	if s.IdleExit > 0 {
		go s.watchIdle(ctx, cancel)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			s.closeAll()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("netgroup switch: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(c)
		}()
	}
}

// watchIdle cancels once no port has been open for IdleExit.
func (s *Switch) watchIdle(ctx context.Context, cancel func()) {
	t := time.NewTimer(s.IdleExit)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.empty:
			t.Reset(s.IdleExit)
		case <-t.C:
			s.mu.Lock()
			n := len(s.ports)
			s.mu.Unlock()
			if n == 0 {
				s.logf("no member connected for %s: exiting", s.IdleExit)
				cancel()
				return
			}
			t.Reset(s.IdleExit)
		}
	}
}

func (s *Switch) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.ports {
		p.close()
	}
}

func (s *Switch) serveConn(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var h Hello
	err := readMsg(c, &h)
	var mac [6]byte
	if err == nil {
		mac, err = parseMAC(h.MAC)
	}
	if err == nil && s.Admit == nil {
		err = errors.New("the switch admits no one")
	}
	if err == nil {
		err = s.Admit(h)
	}
	if err != nil {
		s.logf("refused %q: %v", h.Machine, err)
		writeMsg(c, reply{Error: err.Error()})
		return
	}
	if err := writeMsg(c, reply{}); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	p := &port{conn: c, mac: mac, name: h.Machine, out: make(chan []byte, 256)}
	s.mu.Lock()
	if old := s.ports[mac]; old != nil {
		// The member came back (its agent restarted): the new connection wins.
		old.close()
	}
	s.ports[mac] = p
	s.mu.Unlock()
	s.logf("admitted %s (%s)", h.Machine, h.MAC)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range p.out {
			if writeFrame(c, f) != nil {
				p.close()
				for range p.out {
				}
				return
			}
		}
	}()
	s.readFrames(p)
	s.mu.Lock()
	if s.ports[mac] == p {
		delete(s.ports, mac)
	}
	last := len(s.ports) == 0
	s.mu.Unlock()
	close(p.out)
	<-done
	s.logf("%s left", h.Machine)
	if last {
		select {
		case s.empty <- struct{}{}:
		default:
		}
	}
}

// readFrames switches p's frames until its connection ends.
func (s *Switch) readFrames(p *port) {
	defer p.close()
	for {
		f, err := readFrame(p.conn, maxFrame)
		if err != nil {
			return
		}
		if len(f) < 14 || [6]byte(f[6:12]) != p.mac {
			continue // runt, or not from the member's own MAC
		}
		dst := [6]byte(f[:6])
		s.mu.Lock()
		if to := s.ports[dst]; to != nil && dst[0]&1 == 0 {
			send(to, f)
		} else {
			for _, to := range s.ports {
				if to != p {
					send(to, f)
				}
			}
		}
		s.mu.Unlock()
	}
}

// send queues f for a port, or drops it when the port is behind, as a switch would.
// Called with s.mu held: a port's channel closes only after it left s.ports.
func send(p *port, f []byte) {
	select {
	case p.out <- f:
	default:
	}
}
