// Command probe is what the conformance suite runs inside a sandbox to try
// its walls: one static binary, copied in with WriteFile, so the checks do
// not depend on which tools (python, nc, wget) an image happens to have.
// Each subcommand prints one line saying what happened.
//
//	probe connect HOST:PORT       "connected", or the error's errno name (ECONNREFUSED, ENETUNREACH, …)
//	probe resolve NAME            "resolved", or "failed: …"
//	probe http METHOD URL [BODY]  "STATUS BODY" of a request with the environment's x-api-key
//	probe procs                   every process's command line, one per line
//	probe environ                 every readable environment of a process, one entry per line
//	probe find SECRET DIR...      each file under DIR that contains SECRET ("none" if none)
//	probe unshare-user            "unshared", or the errno name
//	probe mount                   "mounted", or the errno name
//	probe status                  the Uid, CapEff, CapBnd and NoNewPrivs lines of /proc/self/status
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe connect|resolve|http|procs|find|unshare-user|mount|status ...")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "connect":
		c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
		if err != nil {
			fmt.Println(errnoOf(err))
			return
		}
		c.Close()
		fmt.Println("connected")
	case "resolve":
		if _, err := net.LookupHost(args[0]); err != nil {
			fmt.Println("failed:", err)
			return
		}
		fmt.Println("resolved")
	case "http":
		var body io.Reader
		if len(args) > 2 {
			body = strings.NewReader(args[2])
		}
		req, err := http.NewRequest(args[0], args[1], body)
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		req.Header.Set("x-api-key", os.Getenv("ANTHROPIC_API_KEY"))
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%d %s\n", resp.StatusCode, b)
	case "procs":
		dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, d := range dirs {
			b, err := os.ReadFile(d)
			if err == nil && len(b) > 0 {
				fmt.Println(strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")))
			}
		}
	case "environ":
		dirs, _ := filepath.Glob("/proc/[0-9]*/environ")
		for _, d := range dirs {
			if b, err := os.ReadFile(d); err == nil {
				fmt.Println(strings.ReplaceAll(string(b), "\x00", "\n"))
			}
		}
	case "find":
		secret := []byte(args[0])
		found := false
		for _, dir := range args[1:] {
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return nil
				}
				if d.IsDir() && (p == "/proc" || p == "/sys" || p == "/dev") {
					return fs.SkipDir
				}
				if !d.Type().IsRegular() {
					return nil
				}
				if contains(p, secret) {
					fmt.Println(p)
					found = true
				}
				return nil
			})
		}
		if !found {
			fmt.Println("none")
		}
	case "unshare-user":
		if err := syscall.Unshare(syscall.CLONE_NEWUSER); err != nil {
			fmt.Println(errnoOf(err))
			return
		}
		fmt.Println("unshared")
	case "mount":
		if err := syscall.Mount("none", "/tmp", "tmpfs", 0, ""); err != nil {
			fmt.Println(errnoOf(err))
			return
		}
		fmt.Println("mounted")
	case "status":
		f, err := os.Open("/proc/self/status")
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			for _, k := range []string{"Uid:", "CapEff:", "CapBnd:", "NoNewPrivs:"} {
				if strings.HasPrefix(sc.Text(), k) {
					fmt.Println(strings.Join(strings.Fields(sc.Text()), " "))
				}
			}
		}
	default:
		fmt.Fprintf(os.Stderr, "probe: unknown subcommand %q\n", os.Args[1])
		os.Exit(2)
	}
}

// contains reports whether the file at p holds s (files over 64 MiB are
// read in part).
func contains(p string, s []byte) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 64<<20))
	return bytes.Contains(b, s)
}

var names = map[syscall.Errno]string{
	syscall.ECONNREFUSED: "ECONNREFUSED", syscall.ENETUNREACH: "ENETUNREACH", syscall.EHOSTUNREACH: "EHOSTUNREACH",
	syscall.ETIMEDOUT: "ETIMEDOUT", syscall.EPERM: "EPERM", syscall.EACCES: "EACCES", syscall.ENOSPC: "ENOSPC",
	syscall.EINVAL: "EINVAL", syscall.ENOSYS: "ENOSYS",
}

func errnoOf(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		if n, ok := names[e]; ok {
			return n
		}
		return "errno " + e.Error()
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return "ETIMEDOUT"
	}
	return "error: " + err.Error()
}
