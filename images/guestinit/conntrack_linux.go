package guestinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// ctnetlink's message types and attributes (linux/netfilter/nfnetlink_conntrack.h); x/sys
// does not define them.
const (
	nfnlSubsysCTNetlink = 1
	ipctnlMsgCTNew      = 0
	ipctnlMsgCTGet      = 1
	ctaTupleOrig        = 1
	ctaTupleReply       = 2
	ctaTimeout          = 7
	ctaTupleIP          = 1
	ctaTupleProto       = 2
	ctaIPv4Src          = 1
	ctaIPv4Dst          = 2
	ctaProtoNum         = 1
	ctaProtoSrcPort     = 2
	ctaProtoDstPort     = 3
	nlaFNested          = 0x8000
)

// nfgenmsg is netfilter's family header.
type nfgenmsg struct {
	Family  uint8
	Version uint8
	ResID   uint16
}

// SettleConntrackID makes the kernel's one-time set-up in nf_ct_get_id happen now, at boot,
// while nothing else is in that function. It seeds the conntrack ID hash on first use
// with net_get_random_once, which then turns a static key off: a patch of the kernel's
// text while other CPUs may be running the function. Under emulation (TCG) a CPU still in
// it hit the patch's int3 and the kernel panicked: dockerd lists the conntrack table when a
// container starts, and with Kubernetes' connections in it that list was long enough
// (TestKubernetes, session 18). One short-lived entry, created and listed through
// ctnetlink while the agent is the only user, takes the patch out of everyone's way.
func SettleConntrackID() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("conntrack: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2e9))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	// UDP 127.0.0.1:9 -> 127.0.0.1:9 (discard), for a second: nothing uses it meanwhile.
	lo := netip.MustParseAddr("127.0.0.1").AsSlice()
	tuple := func() []byte {
		ip := nlMsg(nil).attr(ctaIPv4Src, lo).attr(ctaIPv4Dst, lo)
		proto := nlMsg(nil).attr(ctaProtoNum, []byte{unix.IPPROTO_UDP}).
			attr(ctaProtoSrcPort, binary.BigEndian.AppendUint16(nil, 9)).
			attr(ctaProtoDstPort, binary.BigEndian.AppendUint16(nil, 9))
		return nlMsg(nil).attr(ctaTupleIP|nlaFNested, ip).attr(ctaTupleProto|nlaFNested, proto)
	}
	family := nfgenmsg{Family: unix.AF_INET, Version: unix.NFNETLINK_V0}
	create := newNlMsg(nfnlSubsysCTNetlink<<8|ipctnlMsgCTNew, unix.NLM_F_CREATE, family).
		attr(ctaTupleOrig|nlaFNested, tuple()).attr(ctaTupleReply|nlaFNested, tuple()).
		attr(ctaTimeout, binary.BigEndian.AppendUint32(nil, 1))
	if err := nlRequest(fd, 1, create); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("conntrack: create an entry: %w", err)
	}
	// The list is where the kernel computes each entry's ID.
	if err := nlRequest(fd, 2, newNlMsg(nfnlSubsysCTNetlink<<8|ipctnlMsgCTGet, unix.NLM_F_DUMP, family)); err != nil {
		return fmt.Errorf("conntrack: list: %w", err)
	}
	return nil
}
