package initproc

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
)

// serveBridge forwards every TCP connection on ln, byte for byte, to the
// gateway's Unix socket: the sandbox has no other network, and the
// gateway sees plain HTTP (and CONNECT) as if spoken to it directly.
func serveBridge(ctx context.Context, ln net.Listener, socket string, log *slog.Logger) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go bridge(c, socket, log)
	}
}

func bridge(c net.Conn, socket string, log *slog.Logger) {
	defer c.Close()
	up, err := net.Dial("unix", socket)
	if err != nil {
		log.Warn("init: gateway unreachable", "err", err)
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		// Half-close so a request body's end reaches the other side while
		// the reply still flows back.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
}
