//go:build !windows

package machine

// EngineEndpoint is where the machine's engine API is served on the host: a unix socket.
func (d Dir) EngineEndpoint() string { return d.Sock(SockEngine) }
