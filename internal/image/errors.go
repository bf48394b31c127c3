package image

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/mlagent/mlagent/internal/sanitize"
)

// The kinds of failure a user can act on; errors.Is tells them apart, and
// their messages say what to do.
var (
	ErrUnknown   = errors.New("image not found")
	ErrAuth      = errors.New("registry refused the credentials")
	ErrPlatform  = errors.New("unsupported platform")
	ErrCorrupt   = errors.New("corrupt image")
	ErrNoSpace   = errors.New("no space left on the device holding the image cache")
	ErrNotPulled = errors.New("image is not pulled")
	ErrInUse     = errors.New("image is in use")
)

// registryError turns an error from the registry client into one of the
// errors above, in one sentence, with every credential the keychain holds
// for that registry removed from what the registry said.
func registryError(ref Ref, err error, auth authn.Authenticator) error {
	msg := redact(err.Error(), auth)
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden || hasCode(te, transport.UnauthorizedErrorCode, transport.DeniedErrorCode):
			return fmt.Errorf("%w for %s (HTTP %d): log in with `docker login %s`, or check the credentials in ~/.docker/config.json (registry said: %s)",
				ErrAuth, ref, te.StatusCode, ref.Registry(), msg)
		case te.StatusCode == http.StatusNotFound || hasCode(te, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
			return fmt.Errorf("%w: %s does not exist in %s (or is private: `docker login %s`) (registry said: %s)",
				ErrUnknown, ref, ref.Registry(), ref.Registry(), msg)
		}
		return fmt.Errorf("pull %s: %s", ref, msg)
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || errors.As(err, &opErr) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("pull %s: cannot reach registry %s: %s", ref, ref.Registry(), msg)
	}
	return fmt.Errorf("pull %s: %s", ref, msg)
}

func hasCode(te *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range te.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}

// bearerOrBasic and jwtLike catch credentials the registry itself issued
// (a token from its auth endpoint), which the keychain does not know.
var (
	bearerOrBasic = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}`) })
	jwtLike       = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)
	})
)

// maxMessage bounds what a registry's message adds to an error.
const maxMessage = 300

// redact removes the keychain's credentials for the registry (as they
// are, and base64-encoded as in a Basic header) and token-like strings
// from msg, and bounds it; control characters become spaces.
func redact(msg string, auth authn.Authenticator) string {
	if auth != nil {
		if c, err := auth.Authorization(); err == nil && c != nil {
			var secrets []string
			for _, s := range []string{c.Password, c.Auth, c.IdentityToken, c.RegistryToken} {
				if len(s) >= 4 {
					secrets = append(secrets, s)
				}
			}
			if c.Username != "" || c.Password != "" {
				secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte(c.Username+":"+c.Password)))
			}
			if c.Auth != "" {
				if dec, err := base64.StdEncoding.DecodeString(c.Auth); err == nil {
					if _, pw, ok := strings.Cut(string(dec), ":"); ok && len(pw) >= 4 {
						secrets = append(secrets, pw)
					}
				}
			}
			for _, s := range secrets {
				msg = strings.ReplaceAll(msg, s, "[redacted]")
			}
		}
	}
	msg = bearerOrBasic().ReplaceAllString(msg, "$1 [redacted]")
	msg = jwtLike().ReplaceAllString(msg, "[redacted]")
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	return msg
}

// maxError bounds the message of an error a pull returns.
const maxError = 2000

// untrusted makes err safe to print: what the image, its archive or its
// registry wrote (entry names, platforms, media types, a server's words)
// reaches the user's terminal through it, so its message loses control
// characters and escape sequences. errors.Is and As still see err.
func untrusted(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if clean := sanitize.Line(msg, maxError); clean != msg {
		return &cleanError{msg: clean, err: err}
	}
	return err
}

type cleanError struct {
	msg string
	err error
}

func (e *cleanError) Error() string { return e.msg }
func (e *cleanError) Unwrap() error { return e.err }

// noSpace wraps a write failure that ENOSPC (or EDQUOT) explains.
func noSpace(err error, dir string) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w (%s): free some space (`mlagent image rm` unused images) or set MLAGENT_HOME on a larger disk; nothing half-written was kept", ErrNoSpace, dir)
	}
	return err
}
