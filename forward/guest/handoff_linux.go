package guest

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// handoffTimeout bounds how long a hand-over waits on an engine that takes none (stopped,
// or its queue full): the stream is then copied as before.
const handoffTimeout = 2 * time.Second

// handoffSocket is the agent's one datagram socket for hand-overs, sending to a path each
// time, so an engine that restarts and binds it again is found without redialling.
var handoffSocket = sync.OnceValues(func() (int, error) {
	s, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	tv := syscall.NsecToTimeval(handoffTimeout.Nanoseconds())
	syscall.SetsockoptTimeval(s, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	return s, nil
})

// handOver sends conn's socket to the engine's hand-over socket at path (the engine's end
// is images/engine/handoff), which serves the stream itself from then on. On success the
// caller closes only its own descriptor; on an error nothing was sent and conn is intact.
func handOver(path string, conn net.Conn) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return errors.ErrUnsupported
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	s, err := handoffSocket()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = syscall.Sendmsg(s, []byte{1}, syscall.UnixRights(int(fd)), &syscall.SockaddrUnix{Name: path}, 0)
	})
	if err != nil {
		return err
	}
	return serr
}

// engineAbsent says whether a hand-over failed because no engine takes them at the path
// (Podman, Debian's dockerd, or dockerd between a stop and its start).
func engineAbsent(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}
