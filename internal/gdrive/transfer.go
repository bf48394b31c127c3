package gdrive

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/api/drive/v3"
	"google.golang.org/api/googleapi"
)

const fileFields = "id,name,mimeType,size,md5Checksum"

// partSuffix marks a download in progress; a rerun resumes it.
const partSuffix = ".mlagent-part"

// Import copies the Drive file or folder id into root at dest (a path
// relative to root). If dest is an existing directory, or ends in "/", the
// item goes inside it under its Drive name; otherwise it is written as
// dest. Folders recurse; Workspace files are exported in c.Formats;
// shortcuts and forms are skipped with a warning. Partial downloads are
// resumed from where they stopped, and md5 checksums are verified.
func (c *Client) Import(ctx context.Context, id string, root *os.Root, dest string) (Stats, error) {
	start := time.Now()
	var st Stats
	f, err := c.svc.Files.Get(id).Fields(fileFields).SupportsAllDrives(true).Context(ctx).Do()
	if err != nil {
		return st, fmt.Errorf("drive file %s: %w", id, apiError(err))
	}
	dest = cleanRel(dest)
	if dest == "." || strings.HasSuffix(dest, "/") || isDir(root, dest) {
		dest = path.Join(dest, safeName(f.Name, f.Id))
	}
	if dir := path.Dir(dest); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return st, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	err = c.importItem(ctx, f, root, dest, &st)
	st.Elapsed = time.Since(start)
	return st, err
}

func (c *Client) importItem(ctx context.Context, f *drive.File, root *os.Root, dest string, st *Stats) error {
	switch {
	case f.MimeType == FolderMIME:
		if err := root.MkdirAll(dest, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dest, err)
		}
		st.Folders++
		children, err := c.children(ctx, f.Id)
		if err != nil {
			return err
		}
		used := map[string]bool{}
		for _, ch := range children {
			name := safeName(ch.Name, ch.Id)
			if kind := kindOf[ch.MimeType]; kind != "" {
				if ext, _, ok := c.Formats.pick(ch.MimeType); ok && !strings.HasSuffix(strings.ToLower(name), "."+ext) {
					name += "." + ext
				}
			}
			if used[name] {
				// Drive allows two items of one name in a folder; a disk does not.
				ext := path.Ext(name)
				name = strings.TrimSuffix(name, ext) + "~" + ch.Id + ext
			}
			used[name] = true
			if err := c.importItem(ctx, ch, root, path.Join(dest, name), st); err != nil {
				return err
			}
		}
		return nil
	case kindOf[f.MimeType] != "":
		ext, mime, ok := c.Formats.pick(f.MimeType)
		if !ok {
			return fmt.Errorf("no export format for %s", f.MimeType)
		}
		if !strings.HasSuffix(strings.ToLower(dest), "."+ext) && path.Base(dest) == safeName(f.Name, f.Id) {
			dest += "." + ext
		}
		call := c.svc.Files.Export(f.Id, mime).Context(ctx)
		return c.fetch(ctx, f, root, dest, st, func(rangeFrom int64) (*http.Response, error) {
			// Exports are generated per request: no ranges, start over.
			return call.Download()
		})
	case strings.HasPrefix(f.MimeType, "application/vnd.google-apps."):
		c.warn("skipped %s (%s): Drive cannot download this kind of item", f.Name, f.MimeType)
		st.Skipped++
		return nil
	default:
		return c.fetch(ctx, f, root, dest, st, func(rangeFrom int64) (*http.Response, error) {
			call := c.svc.Files.Get(f.Id).SupportsAllDrives(true).AcknowledgeAbuse(false).Context(ctx)
			if rangeFrom > 0 {
				call.Header().Set("Range", "bytes="+strconv.FormatInt(rangeFrom, 10)+"-")
			}
			return call.Download()
		})
	}
}

// children lists a folder's items, all pages, sorted by name.
func (c *Client) children(ctx context.Context, id string) ([]*drive.File, error) {
	var out []*drive.File
	q := "'" + id + "' in parents and trashed = false"
	err := c.svc.Files.List().Q(q).Fields("nextPageToken, files("+fileFields+")").
		PageSize(1000).SupportsAllDrives(true).IncludeItemsFromAllDrives(true).
		Pages(ctx, func(l *drive.FileList) error {
			out = append(out, l.Files...)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("list folder %s: %w", id, apiError(err))
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].Id < out[j].Id
	})
	return out, nil
}

// fetch downloads into dest+partSuffix, resuming a partial file with a
// Range request when open returns 206, and renames it into place once
// the size and md5 match Drive's.
func (c *Client) fetch(ctx context.Context, f *drive.File, root *os.Root, dest string, st *Stats, open func(rangeFrom int64) (*http.Response, error)) error {
	part := dest + partSuffix
	out, err := openRegular(root, part, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("write %s: %w", dest, err)
	}
	defer out.Close()
	off, err := out.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if c.Progress != nil {
		c.Progress.File(dest, f.Size)
		c.Progress.Reset(off)
	}
	retries := c.Retries
	if retries == 0 {
		retries = 5
	}
	complete := f.Size > 0 && off == f.Size
	for attempt := 0; !complete; attempt++ {
		resp, err := open(off)
		if err == nil && resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && off > 0 {
			resp.Body.Close()
			err = errors.New("range not satisfiable")
			off = 0 // the file changed on Drive: start over
		}
		if err != nil {
			if attempt >= retries || !retryable(err) {
				return fmt.Errorf("download %s: %w", f.Name, apiError(err))
			}
			sleep(ctx, attempt)
			continue
		}
		if resp.StatusCode != http.StatusPartialContent {
			off = 0 // a full body: write from the start
		}
		if err := out.Truncate(off); err != nil {
			resp.Body.Close()
			return err
		}
		if _, err := out.Seek(off, io.SeekStart); err != nil {
			resp.Body.Close()
			return err
		}
		var w io.Writer = out
		if c.Progress != nil {
			c.Progress.Reset(off)
			w = io.MultiWriter(out, c.Progress)
		}
		n, err := io.Copy(w, resp.Body)
		resp.Body.Close()
		off += n
		if err == nil {
			complete = true
			break
		}
		if attempt >= retries || ctx.Err() != nil {
			return fmt.Errorf("download %s: %w (%d bytes kept; run the import again to resume)", f.Name, err, off)
		}
		sleep(ctx, attempt)
	}
	if err := out.Sync(); err != nil {
		return err
	}
	if f.Size > 0 && off != f.Size {
		return fmt.Errorf("download %s: got %d bytes; Drive says %d", f.Name, off, f.Size)
	}
	if f.Md5Checksum != "" {
		sum, err := md5Of(out)
		if err != nil {
			return err
		}
		if sum != f.Md5Checksum {
			root.Remove(part)
			return fmt.Errorf("download %s: md5 %s; Drive says %s (removed; run the import again)", f.Name, sum, f.Md5Checksum)
		}
	}
	out.Close()
	if err := root.Rename(part, dest); err != nil {
		return fmt.Errorf("move %s into place: %w", dest, err)
	}
	st.Files++
	st.Bytes += off
	return nil
}

// md5Of hashes the file written, through its descriptor: opened again by
// name it could be something the sandbox put there meanwhile.
func md5Of(f *os.File) (string, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// openRegular opens name in root only if it is a regular file: the
// volume may be a running sandbox's, and a FIFO there would block open(2)
// until its other side opened (O_NONBLOCK: it does not), a device would be
// read or written, and a link is not followed.
func openRegular(root *os.Root, name string, flag int) (*os.File, error) {
	f, err := root.OpenFile(name, flag|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file (%v)", name, fi.Mode().Type())
	}
	return f, nil
}

func retryable(err error) bool {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code == http.StatusTooManyRequests || ge.Code >= 500
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

func sleep(ctx context.Context, attempt int) {
	d := time.Duration(1<<min(attempt, 5)) * 200 * time.Millisecond
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Export uploads src (a file or directory in root) into the Drive folder
// folderID; a directory becomes a folder of the same name, recursively.
// Files larger than the chunk size go up as resumable uploads, which the
// client retries chunk by chunk. Symlinks are skipped: a sandbox may have
// made them point anywhere. It returns the id of the top item created.
func (c *Client) Export(ctx context.Context, root *os.Root, src, folderID string) (string, Stats, error) {
	start := time.Now()
	var st Stats
	src = cleanRel(strings.TrimSuffix(src, "/"))
	fi, err := root.Lstat(src)
	if err != nil {
		return "", st, fmt.Errorf("export %s: %w", src, err)
	}
	name := path.Base(src)
	if src == "." {
		name = path.Base(root.Name())
	}
	if c.Progress != nil {
		var total int64
		fs.WalkDir(root.FS(), src, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if i, err := d.Info(); err == nil {
					total += i.Size()
				}
			}
			return nil
		})
		c.Progress.SetTotal(total)
	}
	id, err := c.exportItem(ctx, root, src, name, fi, folderID, &st)
	st.Elapsed = time.Since(start)
	return id, st, err
}

func (c *Client) exportItem(ctx context.Context, root *os.Root, src, name string, fi fs.FileInfo, parent string, st *Stats) (string, error) {
	switch {
	case fi.IsDir():
		f, err := c.svc.Files.Create(&drive.File{Name: name, MimeType: FolderMIME, Parents: []string{parent}}).
			Fields("id").SupportsAllDrives(true).Context(ctx).Do()
		if err != nil {
			return "", fmt.Errorf("create folder %s: %w", name, apiError(err))
		}
		st.Folders++
		entries, err := fs.ReadDir(root.FS(), src)
		if err != nil {
			return "", err
		}
		for _, e := range entries {
			child := path.Join(src, e.Name())
			info, err := root.Lstat(child)
			if err != nil {
				return "", err
			}
			if _, err := c.exportItem(ctx, root, child, e.Name(), info, f.Id, st); err != nil {
				return "", err
			}
		}
		return f.Id, nil
	case fi.Mode().IsRegular():
		in, err := openRegular(root, src, os.O_RDONLY)
		if err != nil {
			return "", fmt.Errorf("upload %s: %w", src, err)
		}
		defer in.Close()
		if fi, err = in.Stat(); err != nil {
			return "", err
		}
		chunk := c.ChunkSize
		if chunk == 0 {
			chunk = 8 << 20
		}
		call := c.svc.Files.Create(&drive.File{Name: name, Parents: []string{parent}}).
			Fields("id,size,md5Checksum").SupportsAllDrives(true).Context(ctx).
			Media(in, googleapi.ChunkSize(chunk), googleapi.ContentType("application/octet-stream"))
		if c.Progress != nil {
			c.Progress.File(src, fi.Size())
			call = call.ProgressUpdater(func(current, _ int64) { c.Progress.Reset(current) })
		}
		f, err := call.Do()
		if err != nil {
			return "", fmt.Errorf("upload %s: %w", src, apiError(err))
		}
		if c.Progress != nil {
			c.Progress.Reset(fi.Size())
		}
		st.Files++
		st.Bytes += fi.Size()
		return f.Id, nil
	default:
		c.warn("skipped %s: not a regular file or directory (symlinks are never followed)", src)
		st.Skipped++
		return "", nil
	}
}

// apiError keeps a Drive API error's code and message and drops its
// headers and body, which can be long.
func apiError(err error) error {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		msg := ge.Message
		if msg == "" {
			msg = http.StatusText(ge.Code)
		}
		switch ge.Code {
		case http.StatusUnauthorized:
			msg += " (check the google credentials in the secret store)"
		case http.StatusNotFound:
			msg += " (is the id right, and is it shared with this account?)"
		case http.StatusForbidden:
			msg += " (the account may lack access, or export needs the full drive scope)"
		}
		return fmt.Errorf("drive API %d: %s", ge.Code, msg)
	}
	return err
}

// safeName makes a Drive name usable as one path element.
func safeName(name, id string) string {
	var b strings.Builder
	for _, r := range name {
		if r == '/' || r == 0 || r == '\\' || r < 0x20 || r == 0x7f {
			r = '_'
		}
		b.WriteRune(r)
	}
	s := strings.TrimSpace(b.String())
	if s == "" || s == "." || s == ".." {
		s = "_" + id
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// cleanRel makes p relative to a volume root: a leading "/" is dropped;
// a trailing "/" is kept to mean "into this directory".
func cleanRel(p string) string {
	trailing := strings.HasSuffix(p, "/") && len(strings.Trim(p, "/")) > 0
	p = path.Clean("/" + p)[1:]
	if p == "" {
		return "."
	}
	if trailing {
		p += "/"
	}
	return p
}

func isDir(root *os.Root, p string) bool {
	fi, err := root.Stat(p)
	return err == nil && fi.IsDir()
}

func sortStrings(s []string) []string {
	sort.Strings(s)
	return s
}
