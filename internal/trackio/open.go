package trackio

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
	"modernc.org/sqlite"
)

// Limits bound what a Reader spends on a database it cannot trust: the
// Trackio volume is writable from the sandbox, so a database there may be
// built to be slow, huge or strange. The zero value means the defaults.
type Limits struct {
	// Timeout bounds each read (default 10s); SQLite is interrupted then.
	Timeout time.Duration
	// MaxValue is the largest metrics, config or metadata value read, in
	// bytes (default 4 MiB); a larger one reads as {} with Oversize set.
	MaxValue int
	// MaxName is the longest run id, run name or timestamp kept, in bytes
	// (default 256); a longer one reads as a fixed placeholder.
	MaxName int
	// MaxConfigs bounds the config rows one read returns (default 1000).
	MaxConfigs int
	// MaxBatch bounds the bytes one read returns, all its rows together
	// (default 32 MiB): MaxValue alone allows rows times 4 MiB, and a
	// generated column makes such values from a file of a few kilobytes.
	// A read stops after the row that reaches it (each table returns at
	// least one row, so all make progress) and the next read goes on.
	MaxBatch int
}

// Default limits.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultMaxValue   = 4 << 20
	DefaultMaxName    = 256
	DefaultMaxConfigs = 1000
	DefaultMaxBatch   = 32 << 20
)

// LongName replaces a run id or name longer than Limits.MaxName.
const LongName = "(name too long)"

func (l Limits) withDefaults() Limits {
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	if l.MaxValue <= 0 {
		l.MaxValue = DefaultMaxValue
	}
	if l.MaxName <= 0 {
		l.MaxName = DefaultMaxName
	}
	if l.MaxConfigs <= 0 {
		l.MaxConfigs = DefaultMaxConfigs
	}
	if l.MaxBatch <= 0 {
		l.MaxBatch = DefaultMaxBatch
	}
	return l
}

// fileID identifies the file a path named when it was checked.
type fileID struct{ dev, ino uint64 }

// checkFile opens path without following a symlink and without blocking
// on a FIFO, and accepts it only if it is a regular file. A missing file is
// accepted when optional (a database without -wal or -shm yet).
func checkFile(path string, optional bool) (fileID, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT) && optional:
			return fileID{}, nil
		case errors.Is(err, unix.ELOOP):
			return fileID{}, fmt.Errorf("%s: %w: a symbolic link", path, ErrRefused)
		case errors.Is(err, unix.ENXIO):
			return fileID{}, fmt.Errorf("%s: %w: a socket", path, ErrRefused)
		}
		return fileID{}, fmt.Errorf("%s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileID{}, fmt.Errorf("%s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileID{}, fmt.Errorf("%s: %w: %s, not a regular file", path, ErrRefused, fileKind(st.Mode))
	}
	return fileID{dev: st.Dev, ino: st.Ino}, nil
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a named pipe"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return "not a regular file"
}

// canonical makes path absolute with its directory's symlinks resolved.
// The directory is the host's (the volume root), so resolving it is safe;
// the file name itself is never resolved. SQLite names the file it opened
// the same way, which is what connector.Connect compares against.
func canonical(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(abs)), nil
}

// dsn is the read-only URI of path. The path must be absolute: a relative
// one would become the URI's authority ("file://tk/x.db").
func dsn(path string) string {
	u := url.URL{Scheme: "file", Path: path, RawQuery: "mode=ro" +
		"&_pragma=busy_timeout(250)&_pragma=query_only(1)&_pragma=trusted_schema(0)&_pragma=mmap_size(0)"}
	return u.String()
}

// connector opens a read connection only to the regular file it checked.
// Every connection database/sql opens goes through it, reconnections too.
type connector struct {
	path string // canonical
	base driver.Connector
}

// Connect checks the database and its side files, opens it, and then asks
// SQLite which file it opened: SQLite resolves a symlink in the name before
// it opens (with O_NOFOLLOW), so a file swapped for a symlink between the
// check and the open shows up as another name here, and is refused before
// anything is read from it.
func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	if hookErr != nil {
		return nil, fmt.Errorf("%s: %w", c.path, hookErr)
	}
	for _, p := range []string{c.path, c.path + "-wal", c.path + "-shm"} {
		if _, err := checkFile(p, p != c.path); err != nil {
			return nil, err
		}
	}
	testHookBeforeOpen(c.path)
	conn, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	opened, err := openedFile(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", c.path, err)
	}
	if opened != c.path {
		conn.Close()
		return nil, fmt.Errorf("%s: %w: it was replaced by a link to another file while being opened", c.path, ErrRefused)
	}
	return conn, nil
}

func (c *connector) Driver() driver.Driver { return c.base.Driver() }

// testHookBeforeOpen lets a test swap the file between the check and
// SQLite's open, the window a hostile sandbox would aim at.
var testHookBeforeOpen = func(path string) {}

// openedFile returns the file name SQLite opened as "main".
func openedFile(ctx context.Context, conn driver.Conn) (string, error) {
	q, ok := conn.(driver.QueryerContext)
	if !ok {
		return "", errors.New("sqlite driver cannot query")
	}
	rows, err := q.QueryContext(ctx, "PRAGMA database_list", nil)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	vals := make([]driver.Value, len(rows.Columns()))
	for {
		if err := rows.Next(vals); err != nil {
			if err == io.EOF {
				return "", errors.New("no main database")
			}
			return "", err
		}
		if len(vals) >= 3 && fmt.Sprint(vals[1]) == "main" {
			switch f := vals[2].(type) {
			case string:
				return f, nil
			case []byte:
				return string(f), nil
			}
			return "", errors.New("no file name for the main database")
		}
	}
}

// openDB returns a one-connection pool over the checking connector.
func openDB(path string) (*sql.DB, error) {
	base, err := sqlite.NewConnector(dsn(path))
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(&connector{path: path, base: base})
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// statID is the identity of a regular file at path (no symlink followed).
func statID(path string) (fileID, bool) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileID{}, false
	}
	return fileID{dev: st.Dev, ino: st.Ino}, true
}
