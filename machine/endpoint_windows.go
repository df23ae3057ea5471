package machine

import (
	"crypto/sha256"
	"encoding/hex"
)

// EngineEndpoint is where the machine's engine API is served on the host: a named pipe,
// which is what Windows tools expect. The pipe namespace is global, so the name carries
// a hash of the machine directory to keep two Skiff homes apart.
func (d Dir) EngineEndpoint() string {
	sum := sha256.Sum256([]byte(d.Path))
	return `\\.\pipe\skiff-` + d.Name + "-" + hex.EncodeToString(sum[:4])
}
