package gdrive

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/oauth2"

	"github.com/mlagent/mlagent/internal/gateway"
	"github.com/mlagent/mlagent/internal/protocol"
)

// RouteName is the gateway prefix sandboxes use: /gdrive/drive/v3/….
const RouteName = "gdrive"

// NotConfigured says how the user connects Drive.
const NotConfigured = "Google Drive is not connected; ask the user to run " +
	"`mlagent secret set google GOOGLE_CREDENTIALS=@key.json` on the host (a service-account key or an authorized-user file)"

// Service is the gateway's Drive route: reads only (list, metadata,
// download, export of Workspace files), with the user's token injected.
// Every other request is classified as a write (POST, PATCH, PUT, DELETE,
// uploads) or refused as unknown; writes are held for the user's approval
// like any write leaving the sandbox. ts nil: not configured.
func Service(ts oauth2.TokenSource, upstream string) gateway.Service {
	if upstream == "" {
		upstream = DefaultUpstream
	}
	return gateway.Service{
		Name:     RouteName,
		Upstream: upstream,
		Credential: func(ctx context.Context) (string, error) {
			if ts == nil {
				return "", gateway.ErrNotConfigured
			}
			t, err := ts.Token()
			if err != nil {
				// The gateway logs this: keep the token endpoint's error
				// code and drop its response body.
				var re *oauth2.RetrieveError
				if errors.As(err, &re) {
					return "", fmt.Errorf("google token endpoint: %s %s", re.ErrorCode, re.ErrorDescription)
				}
				return "", fmt.Errorf("google token: %s", redact(err))
			}
			return "Bearer " + t.AccessToken, nil
		},
		Classify:      Classify,
		Describe:      Describe,
		NotConfigured: NotConfigured,
	}
}

// Classify says what a request below /gdrive would do on Drive. Reads:
// GET (or HEAD) of /drive/v3/about, /drive/v3/files (list and search),
// /drive/v3/files/{id} (metadata, or the content with alt=media) and
// /drive/v3/files/{id}/export. Writes: any other method on /drive/v3/… or
// /upload/drive/v3/…. Everything else: not served.
func Classify(method, p string, _ []byte) gateway.Access {
	read := method == http.MethodGet || method == http.MethodHead
	rest, ok := strings.CutPrefix(p, "/drive/v3/")
	if !ok {
		if strings.HasPrefix(p, "/upload/drive/v3/") {
			return gateway.AccessWrite
		}
		return gateway.AccessNone
	}
	if !read {
		return gateway.AccessWrite
	}
	parts := strings.Split(rest, "/")
	switch {
	case rest == "about", rest == "files":
		return gateway.AccessRead
	case len(parts) == 2 && parts[0] == "files" && validID(parts[1]):
		return gateway.AccessRead
	case len(parts) == 3 && parts[0] == "files" && validID(parts[1]) && parts[2] == "export":
		return gateway.AccessRead
	}
	return gateway.AccessNone
}

// Describe names a Drive write for the user: gdrive:write with the file
// id it touches ("new file" for an upload or create).
func Describe(method, p string, _ []byte) protocol.Action {
	a := protocol.Action{Kind: "gdrive:write", Target: "new file", Detail: method + " /gdrive" + p}
	rest := strings.TrimPrefix(strings.TrimPrefix(p, "/upload"), "/drive/v3/files/")
	if id, _, _ := strings.Cut(rest, "/"); rest != p && validID(id) {
		a.Target = id
	}
	return a
}
