package bwrap

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// ErrNoBwrap and ErrNamespaces are the two reasons the local backend
// cannot run on a machine; their messages say what to do.
var (
	ErrNoBwrap    = errors.New("bubblewrap (bwrap) is not installed: install it with `sudo apt-get install bubblewrap` (Debian/Ubuntu) or `sudo dnf install bubblewrap` (Fedora), or set MLAGENT_BWRAP to its path")
	ErrNamespaces = errors.New("the kernel refuses unprivileged user or network namespaces, which local sandboxes need: " +
		"enable them with `sudo sysctl -w kernel.unprivileged_userns_clone=1` (Debian), `sudo sysctl -w user.max_user_namespaces=15000`, " +
		"or on Ubuntu ≥ 23.10 `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; inside a container, run it with --privileged or a seccomp profile that allows unshare/clone")
)

func findBwrap(path string) (string, error) {
	if path == "" {
		path = "bwrap"
	}
	p, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("%w (%v)", ErrNoBwrap, err)
	}
	return p, nil
}

// Check runs the smallest sandbox with the namespaces every sandbox uses
// and turns a refusal into one clear error.
func Check(ctx context.Context, bwrapPath string) error {
	bw, err := findBwrap(bwrapPath)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bw, "--unshare-user", "--unshare-net", "--unshare-pid",
		"--uid", "1000", "--gid", "1000", "--disable-userns", "--cap-drop", "ALL",
		"--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
		"--symlink", "usr/lib64", "/lib64", "--", "/usr/bin/true")
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return bwrapError(strings.TrimSpace(string(out)) + " (" + err.Error() + ")")
	}
	return nil
}

// bwrapError turns bubblewrap's message into an error: one about
// namespaces is ErrNamespaces (errors.Is finds it) with its advice.
func bwrapError(msg string) error {
	if strings.Contains(msg, "usage: ") {
		return errors.New(msg)
	}
	for _, s := range []string{
		"No permissions to creat", "Creating new namespace failed", "setting up uid map",
		"loopback: Failed", "Operation not permitted", "user namespace",
	} {
		if strings.Contains(msg, s) {
			return fmt.Errorf("%w (bwrap: %s)", ErrNamespaces, msg)
		}
	}
	return errors.New(msg)
}
