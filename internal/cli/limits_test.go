package cli

import "testing"

func TestParseBytes(t *testing.T) {
	good := map[string]int64{"": 0, "0": 0, "8G": 8 << 30, "8g": 8 << 30, "512M": 512 << 20, "512MiB": 512 << 20,
		"1.5GB": 3 << 29, "4194304": 4 << 20, " 2t ": 2 << 40}
	for in, want := range good {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"lots", "-1G", "1X", "G", "1024", "9999999999T"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d; want an error", in, got)
		}
	}
}
