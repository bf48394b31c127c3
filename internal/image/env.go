package image

import (
	"regexp"
	"sort"
	"strings"
	"sync"
)

// secretName matches variable names that carry credentials by
// convention; secretValue values that look like well-known credentials.
var (
	secretName = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?i)(TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|AUTH|COOKIE|SESSION)`)
	})
	secretValue = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(sk-|sk_|hf_|ghp_|gho_|ghs_|github_pat_|glpat-|xox[abpr]-|AKIA|ASIA|eyJ)|://[^/@\s]+:[^/@\s]+@`)
	})
)

// proxyNames are the image's proxy settings: a sandbox reaches the
// network only through the gateway, which sets its own.
var proxyNames = map[string]bool{
	"HTTP_PROXY": true, "HTTPS_PROXY": true, "ALL_PROXY": true, "NO_PROXY": true, "FTP_PROXY": true,
}

// SandboxEnv is the part of an image's ENV a sandbox honours (PATH,
// LD_LIBRARY_PATH, CUDA and Python variables, …): everything but what
// looks like it could carry a secret (by name or by value) and proxy
// settings. dropped lists the names left out, for a note.
func SandboxEnv(env []string) (keep map[string]string, dropped []string) {
	keep = map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
			continue
		}
		if secretName().MatchString(k) || secretValue().MatchString(v) || proxyNames[strings.ToUpper(k)] {
			dropped = append(dropped, k)
			continue
		}
		keep[k] = v
	}
	sort.Strings(dropped)
	return keep, dropped
}
