package models

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlagent/mlagent/internal/fakeapi"
)

// today is the day claude-sonnet-4-5, the old hard-coded default, reached
// its end of life.
var today = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

func TestListAndPickFromFakeAPI(t *testing.T) {
	s := fakeapi.Start(fakeapi.Options{APIKey: "sk-test"})
	defer s.Close()
	list, err := List(context.Background(), nil, s.URL(), "sk-test")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(fakeapi.Models) {
		t.Fatalf("listed %d models; want %d (every page)", len(list), len(fakeapi.Models))
	}
	if got, ok := PickDefault(list); !ok || got != "claude-sonnet-5-5" {
		t.Errorf("PickDefault = %q, %v; want claude-sonnet-5-5", got, ok)
	}
	if _, err := List(context.Background(), nil, s.URL(), "sk-wrong"); err == nil {
		t.Error("a wrong key listed models")
	}
}

func TestPickDefault(t *testing.T) {
	d := func(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
	for _, tc := range []struct {
		name string
		list []Info
		want string
	}{
		{"newest active sonnet", []Info{
			{ID: "claude-opus-9", Line: "opus", Lifecycle: "active", Created: d("2027-01-01")},
			{ID: "claude-sonnet-5-5", Line: "sonnet", Lifecycle: "active", Created: d("2026-09-24")},
			{ID: "claude-sonnet-6", Line: "sonnet", Lifecycle: "deprecated", Created: d("2026-12-01")},
			{ID: "claude-sonnet-5", Line: "sonnet", Lifecycle: "active", Created: d("2026-06-30")},
		}, "claude-sonnet-5-5"},
		{"the line, not the id, decides", []Info{
			{ID: "claude-sonnet-lookalike", Line: "haiku", Lifecycle: "active", Created: d("2027-01-01")},
			{ID: "new-name", Line: "sonnet", Lifecycle: "active", Created: d("2026-12-01")},
		}, "new-name"},
		{"a server without lines", []Info{
			{ID: "claude-sonnet-4-6", Created: d("2026-02-17")},
			{ID: "claude-sonnet-5", Created: d("2026-06-30")},
			{ID: "claude-opus-5", Created: d("2026-07-24")},
		}, "claude-sonnet-5"},
		{"none", []Info{{ID: "qwen3-coder"}}, ""},
	} {
		if got, _ := PickDefault(tc.list); got != tc.want {
			t.Errorf("%s: PickDefault = %q; want %q", tc.name, got, tc.want)
		}
	}
}

func fakeLister(t *testing.T, calls *int) func(context.Context) ([]Info, error) {
	s := fakeapi.Start(fakeapi.Options{APIKey: "sk-test"})
	t.Cleanup(s.Close)
	return func(ctx context.Context) ([]Info, error) {
		*calls++
		return List(ctx, nil, s.URL(), "sk-test")
	}
}

// TestChooseDefaultNeverDead is the regression for the old hard-coded
// default: with nothing named, the choice comes from the key's list, and
// is neither deprecated nor retired.
func TestChooseDefaultNeverDead(t *testing.T) {
	var calls int
	r := &Resolver{List: fakeLister(t, &calls), Now: func() time.Time { return today }}
	c := r.Choose(context.Background(), "", true)
	if c.Model != "claude-sonnet-5-5" || len(c.Warnings) != 0 {
		t.Errorf("Choose(\"\") = %+v; want claude-sonnet-5-5 without warnings", c)
	}
	if _, dead := EndOfLife(c.Model); dead {
		t.Errorf("the default %s has an end of life", c.Model)
	}
	if _, dead := EndOfLife(Fallback); dead {
		t.Errorf("Fallback %s has an end of life in the SDK's table", Fallback)
	}
}

func TestChooseWarnings(t *testing.T) {
	var calls int
	r := &Resolver{List: fakeLister(t, &calls), Now: func() time.Time { return today }}
	for _, tc := range []struct {
		requested string
		keep      bool
		model     string
		warn      []string // substrings, in order
	}{
		{"claude-opus-5-5", true, "claude-opus-5-5", nil},
		{"claude-opus-4-5", true, "claude-opus-4-5", []string{"deprecated and reaches its end of life on 2027-01-22 (in 53 days)", "claude-sonnet-5-5"}},
		{"claude-sonnet-4-5", true, "claude-sonnet-4-5", []string{"not among the models your key can use: claude-fable-5-2, claude-haiku-5-5, claude-sonnet-5-5",
			"reached its end of life on 2026-11-30"}},
		{"claude-nope", true, "claude-nope", []string{"not among the models your key can use"}},
		// A resumed session whose model died moves to the default.
		{"claude-sonnet-4-5", false, "claude-sonnet-5-5", []string{"this session's model claude-sonnet-4-5 is not among"}},
	} {
		c := r.Choose(context.Background(), tc.requested, tc.keep)
		all := strings.Join(c.Warnings, "\n")
		if c.Model != tc.model {
			t.Errorf("Choose(%q) model = %q; want %q", tc.requested, c.Model, tc.model)
		}
		if len(tc.warn) == 0 && all != "" {
			t.Errorf("Choose(%q) warns %q; want nothing", tc.requested, all)
		}
		rest := all
		for _, w := range tc.warn {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("Choose(%q) warnings = %q; want %q", tc.requested, all, w)
				break
			}
			rest = rest[i+len(w):]
		}
	}
}

func TestChooseWithoutList(t *testing.T) {
	r := &Resolver{List: func(context.Context) ([]Info, error) { return nil, errors.New("404 not found") }, Now: func() time.Time { return today }}
	c := r.Choose(context.Background(), "", true)
	if c.Model != Fallback || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "could not list") {
		t.Errorf("Choose without a list = %+v; want Fallback with one warning", c)
	}
	// The SDK's table still warns without a list.
	c = r.Choose(context.Background(), "claude-sonnet-4-5-20250929", true)
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "end of life on 2026-11-30") {
		t.Errorf("warnings = %q; want the SDK's end of life", c.Warnings)
	}
}

func TestCacheForADay(t *testing.T) {
	var calls int
	now := today
	path := filepath.Join(t.TempDir(), "models.json")
	r := &Resolver{List: fakeLister(t, &calls), CachePath: path, Key: "https://api.example|key1", Now: func() time.Time { return now }}
	for i := 0; i < 3; i++ {
		if c := r.Choose(context.Background(), "", true); c.Model != "claude-sonnet-5-5" {
			t.Fatalf("Choose = %+v", c)
		}
	}
	if calls != 1 {
		t.Errorf("3 choices listed models %d times; want 1 (cached)", calls)
	}
	now = now.Add(25 * time.Hour)
	r.Choose(context.Background(), "", true)
	if calls != 2 {
		t.Errorf("after a day the list was not read again (%d calls)", calls)
	}
	other := &Resolver{List: r.List, CachePath: path, Key: "https://api.example|key2", Now: r.Now}
	other.Choose(context.Background(), "", true)
	if calls != 3 {
		t.Errorf("another key used the first key's cached list")
	}
	// A stale cache beats no list at all.
	now = now.Add(48 * time.Hour)
	failing := &Resolver{List: func(context.Context) ([]Info, error) { return nil, errors.New("down") }, CachePath: path, Key: other.Key, Now: r.Now}
	if c := failing.Choose(context.Background(), "", true); c.Model != "claude-sonnet-5-5" || len(c.Warnings) != 0 {
		t.Errorf("with a stale cache and no list: %+v", c)
	}
}
