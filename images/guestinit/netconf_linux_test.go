package guestinit

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestConfigureLink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	skip := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread is in its own namespace, so it must die with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			if errors.Is(err, unix.EPERM) {
				skip <- "unshare: " + err.Error()
				return
			}
			t.Errorf("unshare: %v", err)
			return
		}
		checkConfigureLink(t)
		checkConfigureLinkIPv6(t)
	}()
	<-done
	select {
	case why := <-skip:
		t.Skip(why)
	default:
	}
}

// checkConfigureLink runs on a thread in a fresh network namespace, where only lo exists.
func checkConfigureLink(t *testing.T) {
	addr, gw := netip.MustParsePrefix("10.9.8.7/8"), netip.MustParseAddr("10.0.0.1")
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Errorf("lo: %v", err)
		return
	}
	if lo.Flags&net.FlagUp != 0 {
		t.Errorf("lo is up before ConfigureLink: not a fresh namespace")
		return
	}

	for i := range 2 { // The second time finds everything in place and must not fail.
		if err := ConfigureLink("lo", 1400, addr, gw); err != nil {
			t.Errorf("ConfigureLink #%d: %v", i+1, err)
			return
		}
	}

	if lo, err = net.InterfaceByName("lo"); err != nil {
		t.Errorf("lo: %v", err)
		return
	}
	if lo.Flags&net.FlagUp == 0 {
		t.Errorf("lo flags %v, want up", lo.Flags)
	}
	if lo.MTU != 1400 {
		t.Errorf("lo mtu %d, want 1400", lo.MTU)
	}
	if !hasAddr(t, lo, addr) {
		t.Errorf("lo lacks address %v", addr)
	}
	if gws := defaultRoutes(t, unix.AF_INET, lo.Index); len(gws) != 1 || gws[0] != gw {
		t.Errorf("default routes via lo: %v, want [%v]", gws, gw)
	}

	err = ConfigureLink("nosuch0", 1400, addr, gw)
	if err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Errorf("nonexistent interface: error %v, want one naming nosuch0", err)
	}
	// Mixed families must be refused before anything changes, not by the kernel halfway.
	other := netip.MustParsePrefix("10.1.1.1/8")
	if err = ConfigureLink("lo", 1400, other, netip.MustParseAddr("fe80::1")); err == nil {
		t.Errorf("IPv4 address with IPv6 gateway: no error")
	}
	if hasAddr(t, lo, other) {
		t.Errorf("IPv4 address with IPv6 gateway: %v added anyway", other)
	}
}

// checkConfigureLinkIPv6 needs a link other than lo: the kernel turns IPv6 routes through
// lo into reject routes. A veth with no peer named gets one named by the kernel.
func checkConfigureLinkIPv6(t *testing.T) {
	const name = "skiff6"
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		t.Errorf("netlink socket: %v", err)
		return
	}
	defer unix.Close(fd)
	linkinfo := nlMsg(nil).attr(unix.IFLA_INFO_KIND, []byte("veth\x00"))
	err = nlRequest(fd, 1, newNlMsg(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL, unix.IfInfomsg{}).
		attr(unix.IFLA_IFNAME, []byte(name+"\x00")).attr(unix.IFLA_LINKINFO, linkinfo))
	if err != nil {
		t.Logf("no IPv6 check: cannot make a veth: %v", err)
		return
	}

	// A link-local gateway, as IPv6 usually has, is reachable only by naming the link.
	addr, gw := netip.MustParsePrefix("fd00::2/64"), netip.MustParseAddr("fe80::1")
	for i := range 2 {
		if err := ConfigureLink(name, 1280, addr, gw); err != nil {
			t.Errorf("ConfigureLink IPv6 #%d: %v", i+1, err)
			return
		}
	}
	link, err := net.InterfaceByName(name)
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	if link.Flags&net.FlagUp == 0 || link.MTU != 1280 {
		t.Errorf("%s flags %v mtu %d, want up and 1280", name, link.Flags, link.MTU)
	}
	if !hasAddr(t, link, addr) {
		t.Errorf("%s lacks address %v", name, addr)
	}
	if gws := defaultRoutes(t, unix.AF_INET6, link.Index); len(gws) != 1 || gws[0] != gw {
		t.Errorf("IPv6 default routes via %s: %v, want [%v]", name, gws, gw)
	}
}

func hasAddr(t *testing.T, ifc *net.Interface, want netip.Prefix) bool {
	addrs, err := ifc.Addrs()
	if err != nil {
		t.Errorf("%s addresses: %v", ifc.Name, err)
	}
	for _, a := range addrs {
		if a.String() == want.String() {
			return true
		}
	}
	return false
}

// defaultRoutes lists the gateways of the main-table default routes through index, read
// with the standard library's netlink dump rather than the code under test.
func defaultRoutes(t *testing.T, family, index int) []netip.Addr {
	rib, err := syscall.NetlinkRIB(unix.RTM_GETROUTE, family)
	if err != nil {
		t.Errorf("route dump: %v", err)
		return nil
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		t.Errorf("route dump: %v", err)
		return nil
	}
	var gws []netip.Addr
	for _, m := range msgs {
		// rtmsg: family, dst_len, src_len, tos, table, ...
		if m.Header.Type != unix.RTM_NEWROUTE || len(m.Data) < unix.SizeofRtMsg ||
			m.Data[1] != 0 || m.Data[4] != unix.RT_TABLE_MAIN {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			t.Errorf("route attributes: %v", err)
			return nil
		}
		var gw netip.Addr
		oif := -1
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.RTA_GATEWAY:
				gw, _ = netip.AddrFromSlice(a.Value)
			case unix.RTA_OIF:
				if len(a.Value) == 4 {
					oif = int(binary.NativeEndian.Uint32(a.Value))
				}
			}
		}
		if oif == index {
			gws = append(gws, gw)
		}
	}
	return gws
}
