package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/mlagent/mlagent/internal/sandbox"
	"github.com/mlagent/mlagent/internal/sanitize"
	"github.com/mlagent/mlagent/internal/sessionhost"
	"github.com/mlagent/mlagent/internal/sessions"
	"github.com/mlagent/mlagent/internal/volume"
)

func init() {
	register(&Command{
		Name:    "logs",
		Summary: "show a session's background jobs, or follow one's output",
		Run:     runLogs,
	})
}

const logsHelp = `Without JOB, lists the session's background jobs (training runs and the like)
with the size and age of their output. With JOB (job1, job2…), prints that job's
output and, while the session runs, follows it as it grows (Ctrl-C stops
following; the job goes on). SESSION is an id from "mlagent sessions", or
latest. The output is read from the data volume, so it is there after the
session ended too.

Examples:
  mlagent logs latest
  mlagent logs 20260101-120000-ab12cd34 job1`

var jobName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^job[0-9]{1,9}$`) })

func runLogs(ctx context.Context, env *Env, args []string) int {
	flags := newFlagSet(env, "logs", "logs [flags] SESSION [JOB]", logsHelp)
	noFollow := flags.Bool("no-follow", false, "print the output and stop, even while the job runs")
	pos, code := parseInterleaved(flags, args, env)
	if code >= 0 {
		return code
	}
	if len(pos) < 1 || len(pos) > 2 {
		fmt.Fprintln(env.Stderr, "mlagent logs: want SESSION [JOB]; see mlagent logs --help")
		return ExitUsage
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(env.Stderr, "mlagent logs: "+format+"\n", a...)
		return ExitFailure
	}
	idx, done, err := openSessionIndex(ctx, env)
	if err != nil {
		return fail("%v", err)
	}
	var s sessions.Session
	if pos[0] == "latest" {
		s, err = idx.Latest(ctx)
	} else {
		s, err = idx.Get(ctx, pos[0])
	}
	done()
	if err != nil {
		return fail("no session %q (%v); mlagent sessions lists them", sanitize.Line(pos[0], 80), err)
	}
	vol, dir, err := jobsDir(env, s)
	if err != nil {
		return fail("%v", err)
	}
	defer vol.Close()
	if len(pos) == 1 {
		return listJobs(env, s.ID, vol, dir)
	}
	job := pos[1]
	if !jobName().MatchString(job) {
		fmt.Fprintf(env.Stderr, "mlagent logs: %q is not a job id (job1, job2…); mlagent logs %s lists them\n", sanitize.Line(job, 40), s.ID)
		return ExitUsage
	}
	f, err := openLog(vol, path.Join(dir, job+".log"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fail("session %s has no %s; mlagent logs %s lists its jobs", s.ID, job, s.ID)
		}
		return fail("%v", err)
	}
	defer f.Close()
	follow := !*noFollow && sessionhost.Running(env.Config, s.ID)
	return copyLog(ctx, env, f, follow, func() bool { return sessionhost.Running(env.Config, s.ID) })
}

// jobsDir is where the session's shell keeps its jobs' output: a
// directory of the data volume, opened as a root of its own, since the
// sandbox may have made any part of that path a link out of the volume.
func jobsDir(env *Env, s sessions.Session) (*os.Root, string, error) {
	for _, m := range s.Volumes {
		if m.Path != sandbox.DataMount {
			continue
		}
		dir, err := volume.New(env.Config.VolumesDir()).Path(m.Volume)
		if err != nil {
			return nil, "", err
		}
		vol, err := os.OpenRoot(dir)
		if err != nil {
			return nil, "", fmt.Errorf("session %s: data volume: %w", s.ID, err)
		}
		return vol, path.Join("sessions", s.ID+".shell", "jobs"), nil
	}
	return nil, "", fmt.Errorf("session %s has no data volume", s.ID)
}

func listJobs(env *Env, id string, vol *os.Root, dir string) int {
	ents, err := fs.ReadDir(vol.FS(), dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(env.Stderr, "mlagent logs: %v\n", err)
		return ExitFailure
	}
	type row struct {
		name string
		size int64
		mod  time.Time
	}
	var rows []row
	for _, e := range ents {
		name := strings.TrimSuffix(e.Name(), ".log")
		info, err := e.Info()
		if !jobName().MatchString(name) || err != nil || !info.Mode().IsRegular() {
			continue // written in the sandbox: only what the shell makes
		}
		rows = append(rows, row{name, info.Size(), info.ModTime()})
	}
	if len(rows) == 0 {
		fmt.Fprintf(env.Stdout, "session %s has no background jobs\n", id)
		return ExitOK
	}
	sort.Slice(rows, func(a, b int) bool {
		return len(rows[a].name) < len(rows[b].name) || len(rows[a].name) == len(rows[b].name) && rows[a].name < rows[b].name
	})
	for _, r := range rows {
		fmt.Fprintf(env.Stdout, "%-8s %9s  updated %s\n", r.name, humanize.IBytes(uint64(r.size)), humanize.Time(r.mod))
	}
	fmt.Fprintf(env.Stdout, "mlagent logs %s JOB shows one\n", id)
	return ExitOK
}

// openLog opens a job's output, which the sandbox wrote: never through a
// link out of the volume (nor a link at all for the file), never a FIFO
// or device.
func openLog(vol *os.Root, name string) (*os.File, error) {
	f, err := vol.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", sanitize.Line(name, 0))
	}
	return f, nil
}

// copyLog prints the log line by line with control sequences removed
// (it is the sandbox's output), then, following, what is added while
// running() holds.
func copyLog(ctx context.Context, env *Env, f *os.File, follow bool, running func() bool) int {
	r := bufio.NewReaderSize(f, 64<<10)
	w := bufio.NewWriter(env.Stdout)
	defer w.Flush()
	var partial []byte
	for {
		line, err := r.ReadSlice('\n')
		partial = append(partial, line...)
		if err == nil || len(partial) >= 64<<10 {
			w.WriteString(sanitize.Text(string(partial)))
			partial = partial[:0]
			continue
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
			fmt.Fprintf(env.Stderr, "mlagent logs: %v\n", err)
			return ExitFailure
		}
		if !follow {
			break
		}
		w.Flush()
		if !running() {
			follow = false // one more read for what came last
			continue
		}
		select {
		case <-ctx.Done():
			return ExitOK
		case <-time.After(250 * time.Millisecond):
		}
	}
	if len(partial) > 0 {
		w.WriteString(sanitize.Text(string(partial)) + "\n")
	}
	return ExitOK
}
