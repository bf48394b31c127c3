// Package relay copies bytes between connections, both ways, untouched:
// the gateway bridge inside a sandbox (loopback TCP to the gateway) and
// the host's forwarder to a shared gateway both are one Serve. CONNECT
// tunnels and streamed replies pass as they are.
package relay

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
)

// Serve accepts connections on ln until it is closed or ctx ends, and
// relays each to a new connection to address on network ("unix", "tcp").
func Serve(ctx context.Context, ln net.Listener, network, address string, log *slog.Logger) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var d net.Dialer
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := d.DialContext(ctx, network, address)
			if err != nil {
				log.Warn("relay: upstream unreachable", "network", network, "address", address, "err", err)
				return
			}
			defer up.Close()
			Pipe(c, up)
		}()
	}
}

// Pipe copies a to b and b to a until both directions end. When one
// side's input ends, the other side's write half is closed, so the end of
// a request body reaches the far side while its reply still flows back.
func Pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	half := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go half(b, a)
	go half(a, b)
	wg.Wait()
}
