//go:build !unix

package gateway

import "net"

// alive cannot peek here; a stale connection is caught when its first
// read fails, and the request is sent again when its body allows.
func alive(net.Conn, bool) bool { return true }
