package launch

import (
	"fmt"
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
