//go:build unix

package gateway

import (
	"net"
	"syscall"
)

// alive says whether an idle upstream connection may still be used: the
// upstream has not closed it (EOF or reset pending) and sent nothing
// unasked. It peeks without blocking. Any pending byte disqualifies it,
// over TLS too: there it is most likely the close_notify alert a server
// sends before closing an idle connection (at worst a late session
// ticket, and the cost is one new connection).
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	live := true
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
		case err != nil, n == 0:
			live = false // reset, or EOF
		default:
			live = false
		}
		return true
	})
	return live && err == nil
}
