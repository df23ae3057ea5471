package machine

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/forward/usernet/netgroup"
)

// A network group's switch lives apart from every member's host agent (a process of its
// own, `skiff netgroup-switch GROUP`), so that any member may stop while the others keep
// their network. Its socket and lock sit in a run directory named "@GROUP", which no
// machine name can take.

// GroupSocket is the unix socket of a network group's switch (0600, in a 0700 folder).
func (h Home) GroupSocket(group string) string {
	return filepath.Join(h.runDir("@"+group), "switch.sock")
}

// groupLockPath serialises lease changes of one group.
func (h Home) groupLockPath(group string) string {
	return filepath.Join(h.Root, "groups", group+".lock")
}

// GroupMembers are the specs of the machines in a group, sorted by name.
func (h Home) GroupMembers(group string) ([]*Spec, error) {
	names, err := h.List()
	if err != nil {
		return nil, err
	}
	var members []*Spec
	for _, n := range names {
		s, err := h.Dir(n).Spec()
		if err != nil {
			continue // removed meanwhile, or unreadable: not a member we can name
		}
		if s.NetworkGroup == group && group != "" {
			members = append(members, s)
		}
	}
	return members, nil
}

// GroupHosts maps the names of a group's members to their addresses there.
func (h Home) GroupHosts(group string) map[string]string {
	hosts := map[string]string{}
	members, _ := h.GroupMembers(group)
	for _, s := range members {
		if s.GroupLease != nil {
			hosts[s.Name] = s.GroupLease.Address
		}
	}
	return hosts
}

// withGroupLease gives s a lease on its group (or drops it when s has no group) and runs
// save while the group's lock is held, so that two machines never get one address.
func (h Home) withGroupLease(s *Spec, save func() error) error {
	if s.NetworkGroup == "" {
		s.GroupLease = nil
		return save()
	}
	if err := os.MkdirAll(filepath.Dir(h.groupLockPath(s.NetworkGroup)), 0o700); err != nil {
		return err
	}
	l, err := TryLockFor(h.groupLockPath(s.NetworkGroup), 30*time.Second)
	if err != nil {
		return fmt.Errorf("network group %s: %w", s.NetworkGroup, err)
	}
	defer l.Unlock()
	members, err := h.GroupMembers(s.NetworkGroup)
	if err != nil {
		return err
	}
	var used []string
	for _, m := range members {
		if m.Name != s.Name && m.GroupLease != nil {
			used = append(used, m.GroupLease.Address)
		}
	}
	lease, err := netgroup.Allocate(used)
	if err != nil {
		return &Error{Name: s.Name, Class: ErrInvalid, Detail: err.Error()}
	}
	s.GroupLease = &GroupLease{Address: lease.Address, MAC: lease.MAC}
	return save()
}

// AdmitGroupMember is a group switch's admission check: the hello must name a machine of
// the group, with the MAC leased to it, proven with that machine's secret.
func (h Home) AdmitGroupMember(group string) func(netgroup.Hello) error {
	return func(hello netgroup.Hello) error {
		if err := ValidateName(hello.Machine); err != nil {
			return err
		}
		d := h.Dir(hello.Machine)
		s, err := d.Spec()
		if err != nil {
			return errors.New("no such machine")
		}
		if s.NetworkGroup != group || s.GroupLease == nil {
			return fmt.Errorf("%s is not in network group %s", s.Name, group)
		}
		if !strings.EqualFold(s.GroupLease.MAC, hello.MAC) {
			return fmt.Errorf("%s's lease is for another MAC", s.Name)
		}
		secret, err := os.ReadFile(d.File(FileSecret))
		if err != nil || !netgroup.CheckProof(secret, group, hello) {
			return fmt.Errorf("%s did not prove its secret", s.Name)
		}
		return nil
	}
}

// DetachCommand makes cmd outlive the terminal and process that start it, as a host
// agent does (a group's switch).
func DetachCommand(cmd *exec.Cmd) { detach(cmd) }
