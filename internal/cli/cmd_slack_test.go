package cli_test

import (
	"strings"
	"testing"
)

func TestSlackCLIErrors(t *testing.T) {
	e := newCLIEnv(t)
	for _, tt := range []struct {
		args     []string
		code     int
		stream   string
		contains string
	}{
		{[]string{"slack", "--help"}, 0, "out", "Socket Mode"},
		{[]string{"slack", "extra"}, 2, "err", "unexpected argument"},
		{[]string{"slack", "--nope"}, 2, "err", "-nope"},
		{[]string{"slack"}, 1, "err", "mlagent secret set slack SLACK_BOT_TOKEN=@- SLACK_APP_TOKEN=@-"},
	} {
		out, errOut, code := e.run(t, tt.args...)
		got := errOut
		if tt.stream == "out" {
			got = out
		}
		if code != tt.code || !strings.Contains(got, tt.contains) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d and %q", tt.args, code, out, errOut, tt.code, tt.contains)
		}
	}
}
