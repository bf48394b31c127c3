package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// tokenRequestJSON is the body of POST /v1/tokens.
type tokenRequestJSON struct {
	Sandbox      string  `json:"sandbox"`
	BudgetUSD    float64 `json:"budget_usd"`
	BudgetTokens int64   `json:"budget_tokens"`
	TTL          string  `json:"ttl"` // Go duration; default 24h
}

type issuedJSON struct {
	ID        string    `json:"id"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// DefaultTTL is a token's lifetime when the request names none.
const DefaultTTL = 24 * time.Hour

// parseTokenRequest decodes and validates an admin request body strictly:
// unknown fields, trailing data and bad values are errors.
func parseTokenRequest(body []byte) (TokenRequest, error) {
	var j tokenRequestJSON
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return TokenRequest{}, fmt.Errorf("invalid JSON: %v", err)
	}
	if dec.More() {
		return TokenRequest{}, errors.New("invalid JSON: trailing data")
	}
	r := TokenRequest{Sandbox: j.Sandbox, BudgetUSD: j.BudgetUSD, BudgetTokens: j.BudgetTokens, TTL: DefaultTTL}
	if j.TTL != "" {
		d, err := time.ParseDuration(j.TTL)
		if err != nil {
			return TokenRequest{}, fmt.Errorf("ttl: %v", err)
		}
		r.TTL = d
	}
	return r, r.validate()
}

// AdminHandler serves the admin plane; every route but /healthz needs
// Authorization: Bearer adminToken. Serve it on its own listener, which
// sandboxes cannot reach.
func (g *Gateway) AdminHandler(adminToken string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("POST /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			writeAPIError(w, http.StatusRequestEntityTooLarge, "request_too_large", "body over 64 KiB")
			return
		}
		req, err := parseTokenRequest(body)
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
			return
		}
		it, err := g.Issue(r.Context(), req)
		if err != nil {
			g.log.Error("issue token failed", "err", err)
			writeAPIError(w, http.StatusInternalServerError, "api_error", "could not issue token")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(issuedJSON(it))
	})
	mux.HandleFunc("DELETE /v1/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		err := g.Revoke(r.Context(), r.PathValue("id"))
		switch {
		case errors.Is(err, ErrNoSuchToken):
			writeAPIError(w, http.StatusNotFound, "not_found_error", "no such token")
		case err != nil:
			g.log.Error("revoke failed", "err", err)
			writeAPIError(w, http.StatusInternalServerError, "api_error", "could not revoke token")
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET /v1/usage", func(w http.ResponseWriter, r *http.Request) {
		u, err := g.Usage(r.Context())
		if err != nil {
			g.log.Error("usage failed", "err", err)
			writeAPIError(w, http.StatusInternalServerError, "api_error", "could not read usage")
			return
		}
		if u == nil {
			u = []TokenUsage{}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			Tokens []TokenUsage `json:"tokens"`
		}{u})
	})
	want := []byte("Bearer " + adminToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			got := []byte(r.Header.Get("Authorization"))
			if adminToken == "" || subtle.ConstantTimeCompare(got, want) != 1 {
				writeAPIError(w, http.StatusUnauthorized, "authentication_error", "admin token required (Authorization: Bearer …)")
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// AdminClient calls a gateway's admin plane.
type AdminClient struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// NewAdminClient returns a client for the admin plane at baseURL.
func NewAdminClient(baseURL, adminToken string) *AdminClient {
	return &AdminClient{BaseURL: strings.TrimRight(baseURL, "/"), Token: adminToken, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

func (c *AdminClient) do(ctx context.Context, method, path string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		var e struct {
			Error struct{ Type, Message string } `json:"error"`
		}
		json.Unmarshal(b, &e)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error.Message)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Issue asks the gateway for a token.
func (c *AdminClient) Issue(ctx context.Context, r TokenRequest) (IssuedToken, error) {
	in := tokenRequestJSON{Sandbox: r.Sandbox, BudgetUSD: r.BudgetUSD, BudgetTokens: r.BudgetTokens}
	if r.TTL > 0 {
		in.TTL = r.TTL.String()
	}
	var out issuedJSON
	if err := c.do(ctx, http.MethodPost, "/v1/tokens", in, http.StatusCreated, &out); err != nil {
		return IssuedToken{}, fmt.Errorf("issue token: %w", err)
	}
	return IssuedToken(out), nil
}

// Revoke revokes a token by id.
func (c *AdminClient) Revoke(ctx context.Context, id string) error {
	if err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, http.StatusNoContent, nil); err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	return nil
}

// Usage returns every token's usage.
func (c *AdminClient) Usage(ctx context.Context) ([]TokenUsage, error) {
	var out struct {
		Tokens []TokenUsage `json:"tokens"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/usage", nil, http.StatusOK, &out); err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	return out.Tokens, nil
}
