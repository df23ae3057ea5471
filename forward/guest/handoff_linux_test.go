package guest

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward"
)

// engineEnds starts a stand-in engine: a unix socket for copied streams and, when
// handoff, a datagram socket for handed-over ones (the engine's end is
// images/engine/handoff). It returns the agent's stream to the engine service and where
// the engine saw it arrive.
func engineEnds(t *testing.T, handoff bool) (client net.Conn, copied chan net.Conn, handed chan *os.File) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "docker.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ul.Close() })
	copied = make(chan net.Conn, 1)
	go func() {
		if c, err := ul.Accept(); err == nil {
			copied <- c
		}
	}()
	hpath := filepath.Join(dir, "handoff.sock")
	handed = make(chan *os.File, 1)
	if handoff {
		pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: hpath, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			oob := make([]byte, syscall.CmsgSpace(4))
			_, oobn, _, _, err := pc.ReadMsgUnix(make([]byte, 1), oob)
			if err != nil {
				return
			}
			msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
			if len(msgs) == 1 {
				if fds, err := syscall.ParseUnixRights(&msgs[0]); err == nil && len(fds) == 1 {
					handed <- os.NewFile(uintptr(fds[0]), "handed")
				}
			}
		}()
	}
	// The agent's end of a transport stream is a kernel socket (TCP through the user-mode
	// network, or vsock).
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	client, err = net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	agentEnd, err := tl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{EngineSocket: sock, EngineHandoff: hpath, Logf: t.Logf}
	go a.engine(context.Background(), forward.ServiceEngine, agentEnd)
	return client, copied, handed
}

// TestEngineHandOver: with an engine that takes hand-overs, the stream's own socket
// reaches it, the agent keeps nothing of it, and nothing is copied.
func TestEngineHandOver(t *testing.T) {
	client, copied, handed := engineEnds(t, true)
	var f *os.File
	select {
	case f = <-handed:
	case c := <-copied:
		c.Close()
		t.Fatal("the stream was copied to the engine's socket, not handed over")
	case <-time.After(10 * time.Second):
		t.Fatal("nothing reached the engine")
	}
	served, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The engine's close is the stream's end: the agent holds no descriptor of it.
	pingPong(t, client, served)
}

// TestEngineNoHandOver: with no engine at the hand-over path (Podman, Debian's dockerd),
// the stream is copied to the engine's socket.
func TestEngineNoHandOver(t *testing.T) {
	client, copied, _ := engineEnds(t, false)
	var served net.Conn
	select {
	case served = <-copied:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing reached the engine's socket")
	}
	pingPong(t, client, served)
}

// pingPong checks that the client's bytes reach the engine's end and its answer comes
// back, ending when the engine closes its end.
func pingPong(t *testing.T, client, served net.Conn) {
	t.Helper()
	defer served.Close()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	client.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(served, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("the engine read %q, %v", buf, err)
	}
	served.Write([]byte("pong"))
	served.Close()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "pong" {
		t.Fatalf("client read %q, %v; want pong then EOF", got, err)
	}
}
