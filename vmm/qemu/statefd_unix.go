//go:build !windows

package qemu

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"syscall"
)

// sendFD gives the running QEMU a descriptor under name (QMP getfd over SCM_RIGHTS).
func (q *qmp) sendFD(name string, f *os.File) error {
	uc, ok := q.conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("qmp getfd: %T is not a unix socket", q.conn)
	}
	b, _ := json.Marshal(map[string]any{"execute": "getfd", "arguments": map[string]string{"fdname": name}})
	if _, _, err := uc.WriteMsgUnix(append(b, '\n'), syscall.UnixRights(int(f.Fd())), nil); err != nil {
		return fmt.Errorf("qmp getfd: %w", err)
	}
	return q.reply("getfd", nil)
}
