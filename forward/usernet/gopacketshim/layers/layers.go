// Package layers holds the one layer type gvisor-tap-vsock's switch names (see the
// parent package for why this stands in for gopacket's).
package layers

import "github.com/google/gopacket"

// LayerTypeEthernet is the first layer of the frames the switch prints.
const LayerTypeEthernet gopacket.LayerType = 1
