package cli

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/mlagent/mlagent/internal/sessionhost"
)

func init() {
	register(&Command{
		Name:    "session-host",
		Service: true,
		Summary: "keep a chat's session running for its front ends (started by run and resume)",
		Hidden:  true,
		Run:     runSessionHost,
	})
}

// runSessionHost is a session's host process (internal/sessionhost). The
// front end that started it is on descriptor 3, the terminal it draws
// progress on until the session runs on descriptor 4.
func runSessionHost(ctx context.Context, env *Env, args []string) int {
	if len(args) > 0 {
		fmt.Fprintln(env.Stderr, "mlagent session-host: started by mlagent run and resume; takes no arguments")
		return ExitUsage
	}
	f := os.NewFile(3, "front-end")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(env.Stderr, "mlagent session-host: no front end on descriptor 3: %v\n", err)
		return ExitUsage
	}
	front := c.(*net.UnixConn)
	defer front.Close()
	err = sessionhost.Run(ctx, sessionhost.Options{
		Config: env.Config, Getenv: env.Getenv, Log: env.Log,
		Front: front, Progress: os.NewFile(4, "progress"),
	})
	if err != nil {
		return ExitFailure
	}
	return ExitOK
}
