// Package blob makes deterministic test data, so a server in the guest and a client on
// the host can agree on every byte without sending a checksum along.
package blob

import "encoding/binary"

// Bytes returns n bytes from an xorshift64 stream seeded with seed.
func Bytes(seed uint64, n int) []byte {
	out := make([]byte, n+8)
	x := seed | 1
	for i := 0; i < n; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(out[i:], x)
	}
	return out[:n]
}
