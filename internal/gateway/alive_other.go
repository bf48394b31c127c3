//go:build !unix

package gateway

import "net"

// alive cannot peek here; a stale connection is caught when writing to it
// fails (and the request is sent again when its body allows) or when its
// first read fails (502; the client may retry).
func alive(net.Conn) bool { return true }
