package transport

import (
	"errors"
	"io"
	"net"
	"testing"
)

// handshakeWith runs one side of the handshake on a pipe whose other end sends data and
// reads whatever comes back, and returns that side's error.
func handshakeWith(data []byte, side func(net.Conn) error) error {
	ours, theirs := net.Pipe()
	go io.Copy(io.Discard, theirs)
	go func() {
		theirs.Write(data)
		theirs.Close()
	}()
	err := side(ours)
	ours.Close()
	return err
}

// FuzzHandshake: whatever a peer without the secret sends, as a client or as a server,
// the handshake fails cleanly (no panic, no service granted, no hang past the stream's end).
func FuzzHandshake(f *testing.F) {
	f.Add([]byte(magic + "0123456789abcdef0123456789abcdef"))
	f.Add([]byte("SKF0"))
	f.Add(append([]byte(magic+"0123456789abcdef0123456789abcdef"), make([]byte, macLen+2)...))
	f.Add([]byte{})
	secret, err := NewSecret()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := handshakeWith(data, func(c net.Conn) error {
			service, err := Accept(c, secret)
			if err == nil {
				t.Fatalf("a peer without the secret was accepted for %q", service)
			}
			return err
		}); err == nil {
			t.Fatal("accepted")
		}
		if err := handshakeWith(data, func(c net.Conn) error { return Open(c, secret, "engine") }); err == nil {
			t.Fatal("a server without the secret was believed")
		} else if len(data) >= nonceLen+macLen && !errors.Is(err, ErrUnauthenticated) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("a forged server answer: %v", err)
		}
	})
}
