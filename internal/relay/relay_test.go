package relay

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// An upstream that reads the whole request (to its end: the client's
// half-close) and then replies proves both directions and the half-close,
// over each network the relay dials.
func TestServeRelaysBothWaysWithHalfClose(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "up.sock")
			}
			up, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer up.Close()
			go func() {
				c, err := up.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				req, _ := io.ReadAll(c)
				io.WriteString(c, "got "+string(req))
			}()

			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				Serve(ctx, ln, network, up.Addr().String(), slog.New(slog.DiscardHandler))
				close(done)
			}()

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "hello")
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			reply, err := io.ReadAll(c)
			if err != nil || string(reply) != "got hello" {
				t.Errorf("got %q, %v; want the upstream's reply to the whole request", reply, err)
			}

			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return after ctx ended")
			}
		})
	}
}
