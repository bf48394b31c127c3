// Package gdrive moves files between Google Drive and mlagent's volumes on
// the host (import: files and folders, Google Docs/Sheets/Slides exported to
// a chosen format; export: resumable uploads), and defines the gateway's
// read-only Drive route for sandboxes. The user's Google credential (a
// service-account key or an authorized-user file) comes from the secret
// store and never leaves the host.
package gdrive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/drive/v3"
	"google.golang.org/api/option"
)

// Scopes: the gateway's route and import only read; export creates files.
const (
	ScopeReadOnly = drive.DriveReadonlyScope
	ScopeFull     = drive.DriveScope
)

// DefaultUpstream is the Drive API's host.
const DefaultUpstream = "https://www.googleapis.com"

// FolderMIME is a Drive folder's MIME type.
const FolderMIME = "application/vnd.google-apps.folder"

// TokenSource makes a refreshing token source from a credential JSON: a
// service-account key ("type": "service_account") or an authorized-user
// file ("type": "authorized_user", as `gcloud auth application-default
// login` writes). Other types are refused: an external-account config can
// make the host run programs or read files. Errors never quote the JSON.
func TokenSource(ctx context.Context, credJSON []byte, scopes ...string) (oauth2.TokenSource, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(credJSON, &head); err != nil {
		return nil, errors.New("google credentials are not JSON: store a service-account key or an authorized-user file")
	}
	var typ google.CredentialsType
	switch head.Type {
	case "service_account":
		typ = google.ServiceAccount
	case "authorized_user":
		typ = google.AuthorizedUser
	default:
		return nil, fmt.Errorf("google credentials of type %q: want service_account or authorized_user", head.Type)
	}
	creds, err := google.CredentialsFromJSONWithTypeAndParams(ctx, credJSON, typ, google.CredentialsParams{Scopes: scopes})
	if err != nil {
		return nil, fmt.Errorf("google credentials: %s", redact(err))
	}
	return oauth2.ReuseTokenSource(nil, creds.TokenSource), nil
}

// redact keeps an error's first line, which in x/oauth2 never holds the
// key, and drops any response body a token endpoint echoed.
func redact(err error) string {
	s := err.Error()
	if i := strings.IndexAny(s, "\n{"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

// ParseURI parses gdrive://ID (a file or folder id) or a Drive web link
// (https://drive.google.com/drive/folders/ID, …/file/d/ID/…, ?id=ID).
func ParseURI(s string) (string, error) {
	id, ok := strings.CutPrefix(s, "gdrive://")
	if ok {
		id = strings.TrimSuffix(id, "/")
	} else {
		for _, marker := range []string{"/folders/", "/file/d/", "/document/d/", "/spreadsheets/d/", "/presentation/d/", "?id=", "&id="} {
			if i := strings.Index(s, marker); i >= 0 && strings.Contains(s, "google.com") {
				id, ok = s[i+len(marker):], true
				break
			}
		}
		if i := strings.IndexAny(id, "/?&#"); i >= 0 {
			id = id[:i]
		}
	}
	if !ok || !validID(id) {
		return "", fmt.Errorf("%q: want gdrive://FILE_OR_FOLDER_ID or a Drive link", s)
	}
	return id, nil
}

// validID accepts Drive ids (letters, digits, '-' and '_') and "root".
func validID(id string) bool {
	if id == "" || len(id) > 200 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Client is a Drive client on the host.
type Client struct {
	svc *drive.Service
	// Formats picks export formats for Google Docs, Sheets and Slides.
	Formats Formats
	// Progress, when set, sees bytes as they move.
	Progress *Progress
	// Warn receives notes about skipped items (shortcuts, forms).
	Warn func(msg string)
	// ChunkSize is the upload chunk size; files larger go up in resumable
	// chunks. 0: 8 MiB.
	ChunkSize int
	// Retries is how many times a broken download resumes; 0: 5.
	Retries int
	http    *http.Client
	base    string
}

// NewClient returns a client that authenticates with ts. upstream is the
// API host ("" = DefaultUpstream; tests pass a fake's URL).
func NewClient(ctx context.Context, ts oauth2.TokenSource, upstream string) (*Client, error) {
	if upstream == "" {
		upstream = DefaultUpstream
	}
	base := strings.TrimSuffix(upstream, "/") + "/drive/v3/"
	hc := oauth2.NewClient(ctx, ts)
	hc.Timeout = 0 // big downloads; each request has its context
	svc, err := drive.NewService(ctx, option.WithHTTPClient(hc), option.WithEndpoint(base))
	if err != nil {
		return nil, fmt.Errorf("drive client: %w", err)
	}
	return &Client{svc: svc, Formats: DefaultFormats(), http: hc, base: base}, nil
}

func (c *Client) warn(format string, args ...any) {
	if c.Warn != nil {
		c.Warn(fmt.Sprintf(format, args...))
	}
}

// Formats maps a Google Workspace type to the format its files are
// exported as: a short name (docx, pdf, csv, …).
type Formats struct {
	Doc, Sheet, Slides, Drawing string
}

// DefaultFormats are the most useful for ML work: Docs as Markdown,
// Sheets as CSV (first sheet), Slides as PDF, drawings as PNG.
func DefaultFormats() Formats {
	return Formats{Doc: "md", Sheet: "csv", Slides: "pdf", Drawing: "png"}
}

// exportTypes lists, per Workspace type, the formats Drive exports to.
var exportTypes = map[string]map[string]string{
	"application/vnd.google-apps.document": {
		"md": "text/markdown", "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
		"pdf": "application/pdf", "txt": "text/plain", "odt": "application/vnd.oasis.opendocument.text",
		"html": "application/zip", "rtf": "application/rtf", "epub": "application/epub+zip",
	},
	"application/vnd.google-apps.spreadsheet": {
		"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
		"pdf": "application/pdf", "ods": "application/x-vnd.oasis.opendocument.spreadsheet", "tsv": "text/tab-separated-values",
	},
	"application/vnd.google-apps.presentation": {
		"pdf": "application/pdf", "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
		"txt": "text/plain", "odp": "application/vnd.oasis.opendocument.presentation",
	},
	"application/vnd.google-apps.drawing": {
		"png": "image/png", "pdf": "application/pdf", "svg": "image/svg+xml", "jpg": "image/jpeg",
	},
}

// kindOf names a Workspace MIME type for messages and flags.
var kindOf = map[string]string{
	"application/vnd.google-apps.document":     "doc",
	"application/vnd.google-apps.spreadsheet":  "sheet",
	"application/vnd.google-apps.presentation": "slides",
	"application/vnd.google-apps.drawing":      "drawing",
}

// Validate checks that every format is one Drive can export to.
func (f Formats) Validate() error {
	for mime, name := range map[string]string{
		"application/vnd.google-apps.document": f.Doc, "application/vnd.google-apps.spreadsheet": f.Sheet,
		"application/vnd.google-apps.presentation": f.Slides, "application/vnd.google-apps.drawing": f.Drawing,
	} {
		if _, ok := exportTypes[mime][name]; !ok {
			var names []string
			for n := range exportTypes[mime] {
				names = append(names, n)
			}
			return fmt.Errorf("%s format %q: want one of %s", kindOf[mime], name, strings.Join(sortStrings(names), ", "))
		}
	}
	return nil
}

func (f Formats) pick(mime string) (ext, exportMIME string, ok bool) {
	name := map[string]string{
		"application/vnd.google-apps.document": f.Doc, "application/vnd.google-apps.spreadsheet": f.Sheet,
		"application/vnd.google-apps.presentation": f.Slides, "application/vnd.google-apps.drawing": f.Drawing,
	}[mime]
	m, ok := exportTypes[mime][name]
	if name == "html" {
		name = "zip" // Drive exports a Doc's HTML as a zip of the page and its images
	}
	return name, m, ok
}

// Stats counts what a transfer moved.
type Stats struct {
	Files, Folders, Skipped int
	Bytes                   int64
	Elapsed                 time.Duration
}
