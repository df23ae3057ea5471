// Package transport is the one host<->guest channel abstraction: the host opens streams to
// named services in the guest and the guest opens streams to services on the host. Under it
// sits vsock, hvsock or a TCP stream through the embedded user-mode network; above it every
// stream is authenticated with the machine's secret, because any process in the VM (a
// container included) can reach the same vsock ports or guest addresses.
package transport

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

const (
	magic     = "SKF1"
	nonceLen  = 32
	macLen    = sha256.Size
	maxName   = 1024
	statusOK  = 0
	statusErr = 1
	// handshakeTimeout bounds how long a silent peer can hold a connection open. Generous:
	// an emulated guest under a burst of new streams answers slowly, not never.
	handshakeTimeout = 30 * time.Second
)

// SecretLen is the length of a machine secret in bytes.
const SecretLen = 32

// ErrUnauthenticated is returned when the peer does not prove knowledge of the secret.
var ErrUnauthenticated = errors.New("peer failed authentication")

// NewSecret makes a fresh per-machine secret.
func NewSecret() ([]byte, error) {
	s := make([]byte, SecretLen)
	_, err := rand.Read(s)
	return s, err
}

func proof(secret []byte, role string, nc, ns []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(role))
	m.Write(nc)
	m.Write(ns)
	return m.Sum(nil)
}

// Open authenticates conn as a client and asks the server for service. Both sides prove
// knowledge of the secret (HMAC over both nonces), so neither a stranger nor a replayed
// transcript can open or answer a channel.
func Open(conn net.Conn, secret []byte, service string) error {
	return openFirst(conn, secret, service, nil)
}

// openFirst is Open that sends first, the stream's first bytes, with the service's name:
// the server passes on to the service only what follows the name, and only once it has
// granted it.
func openFirst(conn net.Conn, secret []byte, service string, first []byte) error {
	if len(service) > maxName {
		return fmt.Errorf("service name too long")
	}
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	defer conn.SetDeadline(time.Time{})
	nc := make([]byte, nonceLen)
	rand.Read(nc)
	if _, err := conn.Write(append([]byte(magic), nc...)); err != nil {
		return fmt.Errorf("transport handshake: %w", err)
	}
	buf := make([]byte, nonceLen+macLen)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return fmt.Errorf("transport handshake: %w", err)
	}
	ns, ps := buf[:nonceLen], buf[nonceLen:]
	if !hmac.Equal(ps, proof(secret, "server", nc, ns)) {
		return ErrUnauthenticated
	}
	msg := proof(secret, "client", nc, ns)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(service)))
	msg = append(msg, service...)
	if _, err := conn.Write(append(msg, first...)); err != nil {
		return fmt.Errorf("transport handshake: %w", err)
	}
	return readStatus(conn, service)
}

// RefusedError is a server's answer that it cannot connect a service.
type RefusedError struct {
	Service, Reason string
}

func (e *RefusedError) Error() string { return e.Service + ": " + e.Reason }

// readStatus reads the server's answer to a service request.
func readStatus(conn net.Conn, service string) error {
	var st [3]byte
	if _, err := io.ReadFull(conn, st[:]); err != nil {
		return fmt.Errorf("transport handshake: %w", err)
	}
	if st[0] != statusOK {
		reason := make([]byte, binary.BigEndian.Uint16(st[1:]))
		io.ReadFull(conn, reason)
		return &RefusedError{Service: service, Reason: string(reason)}
	}
	return nil
}

// Accept authenticates a client on conn and returns the service it asked for. The caller
// answers with Grant or Refuse.
func Accept(conn net.Conn, secret []byte) (string, error) {
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	defer conn.SetDeadline(time.Time{})
	hello := make([]byte, len(magic)+nonceLen)
	if _, err := io.ReadFull(conn, hello); err != nil {
		return "", fmt.Errorf("transport handshake: %w", err)
	}
	if string(hello[:len(magic)]) != magic {
		return "", fmt.Errorf("%w: bad magic", ErrUnauthenticated)
	}
	nc := hello[len(magic):]
	ns := make([]byte, nonceLen)
	rand.Read(ns)
	if _, err := conn.Write(append(ns, proof(secret, "server", nc, ns)...)); err != nil {
		return "", fmt.Errorf("transport handshake: %w", err)
	}
	buf := make([]byte, macLen+2)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return "", fmt.Errorf("transport handshake: %w", err)
	}
	if !hmac.Equal(buf[:macLen], proof(secret, "client", nc, ns)) {
		return "", ErrUnauthenticated
	}
	name := make([]byte, binary.BigEndian.Uint16(buf[macLen:]))
	if _, err := io.ReadFull(conn, name); err != nil {
		return "", fmt.Errorf("transport handshake: %w", err)
	}
	return string(name), nil
}

// Grant tells the client its service is connected.
func Grant(conn net.Conn) error {
	_, err := conn.Write([]byte{statusOK, 0, 0})
	return err
}

// Refuse tells the client why its service cannot be connected.
func Refuse(conn net.Conn, reason string) error {
	if len(reason) > maxName {
		reason = reason[:maxName]
	}
	msg := []byte{statusErr}
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(reason)))
	_, err := conn.Write(append(msg, reason...))
	return err
}

// RawDialer reaches the peer's transport port over some medium (vsock, hvsock, netstack).
type RawDialer func(ctx context.Context) (net.Conn, error)

// Dialer opens authenticated streams to named services on the peer.
type Dialer interface {
	Dial(ctx context.Context, service string) (net.Conn, error)
}

// Client is a Dialer over a raw medium.
type Client struct {
	Raw    RawDialer
	Secret []byte
	// Parked is how many authenticated streams the client keeps parked on the peer
	// (ServicePark), so that a Dial costs one round trip; 0 parks none. The first Dial
	// starts parking, each Dial tops the pool up, and an idle client dials nothing.
	Parked int
	// Ahead is, per service, how many streams the client keeps opened ahead of use:
	// granted and connected to the service, so that a Dial of it costs no round trip to
	// the peer at all. Only for services that wait for their client's first bytes and
	// keep a silent new stream for minutes (dockerd); like parking, only a Dial fills it.
	Ahead map[string]int

	parked pool // under ServicePark
	ahead  pool // per service
}

// aheadAge is how long a stream opened ahead is kept unused: well under the 5 minutes
// dockerd waits for a new connection's first request before it closes it.
const aheadAge = 2 * time.Minute

// FirstDialer is a Dialer that can send a stream's first bytes with the request for its
// service, so that the service's answer to them comes back with the grant.
type FirstDialer interface {
	Dialer
	// DialFirst opens service on the peer and writes first to it. A failed dial wrote
	// nothing that reached the service.
	DialFirst(ctx context.Context, service string, first []byte) (net.Conn, error)
}

// Dial opens service on the peer.
func (c *Client) Dial(ctx context.Context, service string) (net.Conn, error) {
	return c.DialFirst(ctx, service, nil)
}

// DialFirst implements FirstDialer. On a stream opened ahead it is a write; on a parked
// stream the name, first and the answer take one round trip, where Dial and a write take
// two.
func (c *Client) DialFirst(ctx context.Context, service string, first []byte) (net.Conn, error) {
	if n := c.Ahead[service]; n > 0 {
		defer c.ahead.fill(service, n, func(ctx context.Context) (net.Conn, error) {
			return c.dialParked(ctx, service, nil)
		})
		if conn := c.ahead.take(service, aheadAge); conn != nil {
			if len(first) == 0 {
				return conn, nil
			}
			if _, err := conn.Write(first); err == nil {
				return conn, nil
			}
			conn.Close()
		}
	}
	return c.dialParked(ctx, service, first)
}

// dialParked is DialFirst on a parked stream, or a fresh one.
func (c *Client) dialParked(ctx context.Context, service string, first []byte) (net.Conn, error) {
	if c.Parked <= 0 {
		return c.open(ctx, service, first)
	}
	defer c.parked.fill(ServicePark, c.Parked, func(ctx context.Context) (net.Conn, error) {
		return c.open(ctx, ServicePark, nil)
	})
	if conn := c.parked.take(ServicePark, parkedAge); conn != nil {
		err := unpark(ctx, conn, service, first)
		if err == nil {
			return conn, nil
		}
		conn.Close()
		var refused *RefusedError
		if errors.As(err, &refused) || ctx.Err() != nil {
			return nil, err
		}
		// A parked stream the peer dropped (it restarted): dial afresh. What was sent
		// with the name never reached the service: the peer passes it on only after
		// granting, and no grant came.
	}
	return c.open(ctx, service, first)
}

// open dials the medium and authenticates a stream for service, sending first with it.
func (c *Client) open(ctx context.Context, service string, first []byte) (net.Conn, error) {
	conn, err := c.Raw(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	err = openFirst(conn, c.Secret, service, first)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Handler serves one granted stream for a service.
type Handler func(ctx context.Context, service string, conn net.Conn)

// Router picks a handler for a service name, or says why there is none.
type Router func(service string) (Handler, error)

// AcceptLoop hands each connection on ln to handle, in its own goroutine, until ctx ends
// (then it returns nil) or the listener fails (AcceptConn retries what passes).
func AcceptLoop(ctx context.Context, ln net.Listener, handle func(net.Conn)) error {
	return acceptLoop(ctx, ln, func() bool { return true }, handle)
}

// transientAccept reports whether an accept failed for a cause that passes (out of
// descriptors or buffers, a connection aborted before it was taken) rather than with
// the listener.
func transientAccept(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// AcceptConn waits for ln's next connection. An accept that fails for a passing cause is
// tried again after a wait that grows to a second, as net/http's Serve does: the
// listener still works, and giving up would leave a machine that reads running with its
// engine socket or a published port dead until the next start.
func AcceptConn(ctx context.Context, ln net.Listener) (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := ln.Accept()
		if err == nil || !transientAccept(err) {
			return c, err
		}
		wait = min(max(2*wait, 5*time.Millisecond), time.Second)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}

// acceptLoop is AcceptLoop that accepts only once admit allows (false: ctx ended). A slot
// admitted for an accept that timed out is kept for the next accept.
func acceptLoop(ctx context.Context, ln net.Listener, admit func() bool, handle func(net.Conn)) error {
	go func() { <-ctx.Done(); ln.Close() }()
	admitted := false
	for {
		if !admitted && !admit() {
			return nil
		}
		admitted = true
		conn, err := AcceptConn(ctx, ln)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		admitted = false
		go handle(conn)
	}
}

// Serve accepts streams on ln until ctx ends, with the default ServeOptions.
func Serve(ctx context.Context, ln net.Listener, secret []byte, route Router, logf func(string, ...any)) error {
	return ServeWith(ctx, ln, secret, route, logf, ServeOptions{})
}

// ServeOptions bound what peers that never authenticate can cost a server: anything in the
// VM can reach its port.
type ServeOptions struct {
	// MaxPending bounds the handshakes in progress at once (DefaultMaxPending). Beyond it
	// new connections wait in the listener's backlog, costing the server nothing, until a
	// handshake ends (each within handshakeTimeout): a burst of real streams is slowed,
	// not refused.
	MaxPending int
	// LogEvery is how often refused connections are logged (DefaultLogEvery): the first
	// at once, the rest summed up in one line per period.
	LogEvery time.Duration
	// ParkedIdle is how long a parked stream that is never named is held
	// (DefaultParkedIdle), so that the streams of a client that went away without a word
	// (a guest restored from a snapshot whose host is another process) do not pile up.
	ParkedIdle time.Duration
}

// Defaults for ServeOptions.
const (
	DefaultMaxPending = 128
	DefaultLogEvery   = 10 * time.Second
	DefaultParkedIdle = 2 * parkedAge // the client drops them after parkedAge
)

// ServeWith accepts streams on ln until ctx ends. Unauthenticated peers are refused and
// logged.
func ServeWith(ctx context.Context, ln net.Listener, secret []byte, route Router, logf func(string, ...any), o ServeOptions) error {
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.LogEvery <= 0 {
		o.LogEvery = DefaultLogEvery
	}
	if o.ParkedIdle <= 0 {
		o.ParkedIdle = DefaultParkedIdle
	}
	refused := &refusalLog{logf: logf, every: o.LogEvery}
	pending := make(chan struct{}, o.MaxPending)
	var fullLogged time.Time
	return acceptLoop(ctx, ln, func() bool {
		select {
		case pending <- struct{}{}:
			return true
		default:
		}
		if time.Since(fullLogged) > o.LogEvery {
			logf("transport: %d handshakes pending; new connections wait for one to end", o.MaxPending)
			fullLogged = time.Now()
		}
		select {
		case pending <- struct{}{}:
			return true
		case <-ctx.Done():
			return false
		}
	}, func(conn net.Conn) {
		service, err := Accept(conn, secret)
		<-pending
		if err != nil {
			refused.add(fmt.Sprintf("connection from %s: %v", conn.RemoteAddr(), err))
			conn.Close()
			return
		}
		if service == ServicePark {
			// Authenticated: held, outside the handshake bound, until it is named.
			if err := Grant(conn); err != nil {
				conn.Close()
				return
			}
			serveParked(ctx, conn, route, o.ParkedIdle)
			return
		}
		dispatch(ctx, conn, service, route)
	})
}

// dispatch hands an authenticated stream to the handler of the service it names, or
// refuses it.
func dispatch(ctx context.Context, conn net.Conn, service string, route Router) {
	h, err := route(service)
	if err != nil {
		Refuse(conn, err.Error())
		conn.Close()
		return
	}
	if err := Grant(conn); err != nil {
		conn.Close()
		return
	}
	h(ctx, service, conn)
}

// refusalLog logs the first refusal of a period as it happens and sums up the rest in one
// line at the period's end, so that a peer retrying without end cannot grow the log
// without end.
type refusalLog struct {
	logf  func(string, ...any)
	every time.Duration

	mu    sync.Mutex
	quiet time.Time // refusals before this are held for the summary
	held  int
	last  string
	timer *time.Timer
}

func (r *refusalLog) add(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.held == 0 && now.After(r.quiet) {
		r.logf("transport: refused %s", what)
		r.quiet = now.Add(r.every)
		return
	}
	r.held++
	r.last = what
	if r.timer == nil {
		r.timer = time.AfterFunc(time.Until(r.quiet), r.flush)
	}
}

func (r *refusalLog) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timer = nil
	if r.held == 0 {
		return
	}
	r.logf("transport: refused %d more connections in the last %s, the last %s", r.held, r.every, r.last)
	r.held, r.last = 0, ""
	r.quiet = time.Now().Add(r.every)
}
