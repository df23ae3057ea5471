package transport

// vsock addresses a guest dials (the host gives each guest its own context ID).
const (
	HostCID  uint32 = 2 // the host, on every transport (virtio, vz, hv_sock)
	LocalCID uint32 = 1 // the guest itself, over vsock_loopback
)
