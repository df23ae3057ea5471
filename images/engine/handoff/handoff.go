//go:build linux

// Package handoff is dockerd's end of the engine API streams Skiff's guest agent hands
// over: the agent authenticates each stream from the host, then sends its socket here
// (SCM_RIGHTS on a datagram socket) instead of copying it to and from dockerd's unix
// socket, so that dockerd reads and writes the host's stream itself. The agent's end is
// forward/guest.
package handoff

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// Env names the datagram socket the engine binds for handed-over streams; the guest
// agent sends to the same path.
const Env = "SKIFF_ENGINE_HANDOFF"

// Listener accepts the sockets sent to its datagram socket as connections.
type Listener struct {
	pc   *net.UnixConn
	path string
}

// Listen binds path and returns a listener of the sockets sent to it. Its directory is
// made owner-only, as is the socket: a handed-over stream is the engine's API. A stale
// socket file from an earlier engine is replaced.
func Listen(path string) (*Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	os.Remove(path)
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err == nil {
		err = os.Chmod(path, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	pc.SetReadBuffer(64 << 10)
	return &Listener{pc: pc, path: path}, nil
}

// Accept waits for the next socket sent. A message that carries none is skipped.
func (l *Listener) Accept() (net.Conn, error) {
	buf := make([]byte, 16)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	for {
		_, oobn, flags, _, err := l.pc.ReadMsgUnix(buf, oob)
		if err != nil {
			return nil, err
		}
		fds := rights(oob[:oobn])
		if len(fds) == 0 || flags&syscall.MSG_CTRUNC != 0 {
			closeAll(fds)
			continue
		}
		closeAll(fds[1:])
		c, err := connOf(fds[0], true)
		if err != nil {
			continue
		}
		return c, nil
	}
}

// Close stops accepting and removes the socket file. Connections already accepted are
// the caller's.
func (l *Listener) Close() error {
	err := l.pc.Close()
	os.Remove(l.path)
	return err
}

// Addr implements net.Listener.
func (l *Listener) Addr() net.Addr { return l.pc.LocalAddr() }

func rights(oob []byte) []int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if f, err := syscall.ParseUnixRights(&m); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

func closeAll(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// connOf makes a connection of a received socket, whose writes are batched (batchConn).
// TCP and unix sockets become the net package's own connections; any other stream socket,
// vsock from a VM's transport, is served through its file. The socket keeps the options
// the agent's runtime gave it: TCP_NODELAY, as on dockerd's own TCP listener (Nagle's
// algorithm was measured: fewer segments, no faster, since each write still went through
// the TCP stack), and keep-alive, which ends a stream whose host went away with a suspend.
func connOf(fd int, netConn bool) (net.Conn, error) {
	c, err := socketConn(fd, netConn)
	if err != nil {
		return nil, err
	}
	return newBatchConn(c), nil
}

func socketConn(fd int, netConn bool) (net.Conn, error) {
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "handed-over stream")
	if netConn {
		if c, err := net.FileConn(f); err == nil {
			f.Close()
			return c, nil
		}
	}
	if typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE); err != nil || typ != syscall.SOCK_STREAM {
		f.Close()
		return nil, errors.New("handoff: not a stream socket")
	}
	return &fileConn{File: f}, nil
}

// fileConn is a stream socket of a family the net package does not know, served through
// its os.File, which the runtime's poller drives as it does a net.Conn.
type fileConn struct {
	*os.File
}

// Read and Write report errors as the net package does (*net.OpError, a net.Error), not
// as os.File's *PathError: the HTTP server tells the deadline it sets to stop its
// background read from a dead client by err.(net.Error).Timeout(), and took the
// PathError for the client gone, cancelling the request (a `docker run`'s wait).
func (c *fileConn) Read(b []byte) (int, error) {
	n, err := c.File.Read(b)
	return n, opError("read", err)
}

func (c *fileConn) Write(b []byte) (int, error) {
	n, err := c.File.Write(b)
	return n, opError("write", err)
}

func opError(op string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &net.OpError{Op: op, Net: fileAddr{}.Network(), Err: pe.Err}
	}
	return err
}

func (c *fileConn) LocalAddr() net.Addr  { return fileAddr{} }
func (c *fileConn) RemoteAddr() net.Addr { return fileAddr{} }

// CloseWrite half-closes the stream, as net.TCPConn's does: the HTTP server's hijacked
// streams (attach, exec) pass the client's end of input on this way.
func (c *fileConn) CloseWrite() error {
	raw, err := c.File.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = syscall.Shutdown(int(fd), syscall.SHUT_WR) }); err != nil {
		return err
	}
	return serr
}

type fileAddr struct{}

func (fileAddr) Network() string { return "handoff" }
func (fileAddr) String() string  { return "handed-over stream" }
