package launch

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
)

// hostPort turns a shared gateway's data-plane URL into a dial address.
// Only plain http is forwarded: the sandbox speaks HTTP to its bridge,
// and a shared gateway is expected on a trusted network or loopback.
func hostPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("--gateway %q: want a URL such as http://gateway:8790", raw)
	}
	if u.Scheme != "http" {
		return "", fmt.Errorf("--gateway %q: only http:// data planes can be bridged", raw)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80"), nil
	}
	return u.Host, nil
}

// forward copies bytes between each connection accepted on ln and a new
// connection to addr, so CONNECT tunnels and streams pass untouched.
func forward(ln net.Listener, addr string, log *slog.Logger) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", addr)
			if err != nil {
				log.Warn("shared gateway unreachable", "addr", addr, "err", err)
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
			go func() { io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
