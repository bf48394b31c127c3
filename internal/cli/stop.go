package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// stopGrace is how long a command may take to stop after SIGTERM (or
// Ctrl-C) cancels its ctx: enough for run's sandbox teardown and the
// revocation of its token. MLAGENT_STOP_GRACE (a Go duration) changes it.
const stopGrace = 30 * time.Second

// runStoppable runs the command with a ctx that SIGTERM, and Ctrl-C for
// a command that is not Interactive, cancels. A command that does not
// watch its ctx (a copy in a system call, a read of a pipe) would
// otherwise ignore SIGTERM for as long as it likes: once the grace
// period is over, or on a second signal, the process exits without
// waiting for it.
func runStoppable(env *Env, c *Command, args []string) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	if c != nil && c.Interactive {
		// Ctrl-C is the chat's own until a stop has begun.
		signal.Notify(sigs, syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	}
	defer signal.Stop(sigs)
	done := make(chan int, 1)
	go func() { done <- run(ctx, env, args) }()

	var first os.Signal
	select {
	case code := <-done:
		return code
	case first = <-sigs:
	}
	cancel()
	if c != nil && c.Interactive {
		signal.Notify(sigs, os.Interrupt)
	}
	name := "mlagent"
	if c != nil {
		name += " " + c.Name
	}
	grace := stopGrace
	if d, err := time.ParseDuration(os.Getenv("MLAGENT_STOP_GRACE")); err == nil && d >= 0 {
		grace = d
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	killed := 128 + int(first.(syscall.Signal))
	// Said only when the stop takes a while, so that the user knows
	// why nothing happens and what a second signal does.
	slow := time.NewTimer(time.Second)
	defer slow.Stop()
	for {
		select {
		case code := <-done:
			return stopped(env, c, name, first, code)
		case <-slow.C:
			fmt.Fprintf(env.Stderr, "%s: stopping (%s); a second signal ends it at once\n", name, signalName(first))
		case <-t.C:
			fmt.Fprintf(env.Stderr, "%s: %s: not stopped after %v: exiting without cleaning up\n", name, signalName(first), grace)
			return killed
		case sig := <-sigs:
			fmt.Fprintf(env.Stderr, "%s: %s again: exiting without cleaning up\n", name, signalName(sig))
			return killed
		}
	}
}

// stopped is the exit code of a command that stopped in time after
// signal first: a user's command exits as one killed by the signal would
// (143, 130), as shells and timeout(1) expect; for a service, SIGTERM is
// the ordinary way to stop, and its own code stands.
func stopped(env *Env, c *Command, name string, first os.Signal, code int) int {
	if c != nil && c.Service {
		return code
	}
	if first == syscall.SIGTERM {
		fmt.Fprintf(env.Stderr, "%s: stopped (SIGTERM)\n", name)
	}
	return 128 + int(first.(syscall.Signal))
}

func signalName(s os.Signal) string {
	if s == os.Interrupt {
		return "SIGINT"
	}
	return "SIGTERM"
}
