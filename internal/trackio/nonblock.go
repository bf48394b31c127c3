package trackio

import (
	"fmt"
	"syscall"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite opens files by name, so a check of the name before the open
// cannot stop a sandbox that swaps a FIFO in between: open(2) of a FIFO for
// reading blocks until a writer appears, in a system call no context or
// sqlite3_interrupt can end. O_NONBLOCK makes that open return at once (and
// a read of an empty FIFO fail with EAGAIN, an I/O error for SQLite). On
// Linux the flag changes nothing for regular files, the only files SQLite
// means to open, so it is added to every open of the process's SQLite.
//
// The unix VFS routes its system calls through a table that
// xSetSystemCall replaces (sqlite.org/c3ref/vfs.html); the transpiled
// library keeps C function pointers as uintptrs to Go func values, which is
// what cFuncPointer builds, as modernc.org/sqlite itself does.

// hookErr is why the hook is not installed, or nil.
var hookErr = installNonblockingOpen()

var vfsHeader sqlite3.Tsqlite3_vfs

// sqliteOpen is the VFS's own "open" the hook wraps.
var sqliteOpen uintptr

func nonblockingOpen(tls *libc.TLS, path uintptr, flags, mode int32) int32 {
	return cFunc[func(*libc.TLS, uintptr, int32, int32) int32](sqliteOpen)(tls, path, flags|syscall.O_NONBLOCK, mode)
}

// installNonblockingOpen runs during package initialisation, before any
// goroutine can be inside SQLite: xSetSystemCall is not thread-safe.
func installNonblockingOpen() error {
	tls := libc.NewTLS()
	defer tls.Close()
	vfs := sqlite3.Xsqlite3_vfs_find(tls, 0)
	if vfs == 0 {
		return fmt.Errorf("sqlite: no default VFS")
	}
	// A copy of the VFS's header, to read its method pointers (into a
	// package variable: Go never moves those, so its address may pass
	// through a uintptr).
	libc.Xmemcpy(tls, uintptr(unsafe.Pointer(&vfsHeader)), vfs, libc.Tsize_t(unsafe.Sizeof(vfsHeader)))
	v := vfsHeader
	if v.FiVersion < 3 || v.FxGetSystemCall == 0 || v.FxSetSystemCall == 0 {
		return fmt.Errorf("sqlite: VFS %d cannot replace system calls", v.FiVersion)
	}
	name, err := libc.CString("open")
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	defer libc.Xfree(tls, name)
	cur := cFunc[func(*libc.TLS, uintptr, uintptr) uintptr](v.FxGetSystemCall)(tls, vfs, name)
	if cur == 0 {
		return fmt.Errorf("sqlite: VFS has no open system call")
	}
	if cur == cFuncPointer(nonblockingOpen) {
		return nil // installed already: wrapping it again would recurse
	}
	sqliteOpen = cur
	if rc := cFunc[func(*libc.TLS, uintptr, uintptr, uintptr) int32](v.FxSetSystemCall)(tls, vfs, name, cFuncPointer(nonblockingOpen)); rc != sqlite3.SQLITE_OK {
		return fmt.Errorf("sqlite: replace open: code %d", rc)
	}
	return nil
}

// cFuncPointer is the C function pointer the transpiled library calls for
// f (the representation in https://golang.org/s/go11func; f is a top-level
// function, so its func value is static).
func cFuncPointer[T any](f T) uintptr {
	return *(*uintptr)(unsafe.Pointer(&struct{ f T }{f}))
}

// cFunc is the inverse: a callable Go func for a C function pointer.
func cFunc[T any](p uintptr) T {
	return *(*T)(unsafe.Pointer(&struct{ p uintptr }{p}))
}
