package initproc

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// reaper is the only caller of wait4 in init: as PID 1 it must reap every
// orphan, and a second waiter would steal the exit status of the commands
// it runs. Statuses of commands it started go to their waiters.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan syscall.WaitStatus
}

func startReaper() *reaper {
	r := &reaper{waiters: map[int]chan syscall.WaitStatus{}}
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, syscall.SIGCHLD)
	go func() {
		for range ch {
			r.reap()
		}
	}()
	return r
}

func (r *reaper) reap() {
	for {
		var st syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &st, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.mu.Lock()
		if w, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			w <- st
		}
		r.mu.Unlock()
	}
}

// start forks argv; the returned channel gets its wait status. Holding the
// lock across the fork means a status reaped at once still finds its
// waiter.
func (r *reaper) start(argv0 string, argv []string, attr *syscall.ProcAttr) (int, <-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(argv0, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	w := make(chan syscall.WaitStatus, 1)
	r.waiters[pid] = w
	return pid, w, nil
}

// killAll kills the process group of every running command.
func (r *reaper) killAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid := range r.waiters {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}
