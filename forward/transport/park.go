package transport

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// ServicePark asks the server to hold an authenticated stream until the client names
// the service it is for. A client keeps a few parked so that opening a stream costs one
// round trip (name, answer) instead of a connect and the two of the handshake; each was
// authenticated with the machine's secret like any other stream, and carries one
// service only.
const ServicePark = "transport/park"

// parkedAge is how long a parked stream is kept unused: a suspended or restarted peer
// leaves dead streams, and one found dead costs a fresh dial on top.
const parkedAge = 5 * time.Minute

// serveParked waits for the name of the service a parked stream is for, then answers and
// serves it as a fresh stream.
func serveParked(ctx context.Context, conn net.Conn, route Router, idle time.Duration) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	conn.SetReadDeadline(time.Now().Add(idle))
	var n [2]byte
	_, err := io.ReadFull(conn, n[:])
	name := make([]byte, binary.BigEndian.Uint16(n[:]))
	if err == nil {
		_, err = io.ReadFull(conn, name)
	}
	conn.SetReadDeadline(time.Time{})
	if !stop() || err != nil {
		conn.Close()
		return
	}
	service := string(name)
	if service == ServicePark {
		Refuse(conn, "a parked stream cannot be parked again")
		conn.Close()
		return
	}
	dispatch(ctx, conn, service, route)
}

// unpark names the service for a parked stream, with the stream's first bytes, and reads
// the answer: one round trip.
func unpark(ctx context.Context, conn net.Conn, service string, first []byte) error {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	defer conn.SetDeadline(time.Time{})
	msg := binary.BigEndian.AppendUint16(nil, uint16(len(service)))
	msg = append(msg, service...)
	if _, err := conn.Write(append(msg, first...)); err != nil {
		return fmt.Errorf("transport: parked stream: %w", err)
	}
	return readStatus(conn, service)
}

// Close closes the parked streams and those opened ahead, and opens no more.
func (c *Client) Close() error {
	c.ahead.close()
	c.parked.close()
	return nil
}
