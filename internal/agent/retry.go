package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/mlagent/mlagent/internal/protocol"
)

// callError classifies a failed model request.
type callError struct {
	Kind       string // protocol error kind
	Retryable  bool
	RetryAfter time.Duration // from the response, 0 if none
	Status     int
	Err        error
}

// errIncomplete is a stream that ended without message_stop (a cut
// connection the SSE reader saw as a clean EOF).
var errIncomplete = errors.New("response stream ended before message_stop")

// classify decides whether err is worth retrying: rate limits, overload,
// server errors and broken connections are; a 403 (the gateway's budget
// refusal), bad requests and auth failures are not.
func classify(err error) *callError {
	ce := &callError{Kind: protocol.ErrAPI, Err: err}
	var apiErr *anthropic.Error
	if errors.As(err, &apiErr) {
		ce.Status = apiErr.StatusCode
		if apiErr.Response != nil {
			ce.RetryAfter = retryAfter(apiErr.Response.Header)
		}
		typ := string(apiErr.Type())
		switch {
		case typ == "overloaded_error" || typ == "api_error" || typ == "rate_limit_error" || typ == "timeout_error":
			// Also the SSE error events of a 200 stream.
			ce.Retryable = true
		case apiErr.StatusCode == http.StatusForbidden || typ == "permission_error":
			ce.Kind = protocol.ErrBudget
		case apiErr.StatusCode == http.StatusUnauthorized && strings.Contains(apiErr.RawJSON(), "mlagent gateway:"):
			// The gateway's own refusal of the sandbox's token.
			ce.Kind = protocol.ErrAuth
		case apiErr.StatusCode == http.StatusUnauthorized:
			// Passed through from the model API: the user's key.
			ce.Kind = protocol.ErrKey
		case apiErr.StatusCode == 408 || apiErr.StatusCode == 409 || apiErr.StatusCode == 429 || apiErr.StatusCode >= 500:
			ce.Retryable = true
		}
		ce.Err = fmt.Errorf("%s", apiMessage(apiErr))
		return ce
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ce
	case errors.Is(err, errIncomplete), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		ce.Retryable = true
	default:
		var ne net.Error
		if errors.As(err, &ne) {
			ce.Retryable = true
		} else if s := err.Error(); strings.Contains(s, "received error while streaming") ||
			strings.Contains(s, "connection reset") || strings.Contains(s, "unexpected EOF") ||
			strings.Contains(s, "broken pipe") || strings.Contains(s, "INTERNAL_ERROR") {
			ce.Retryable = true
		}
	}
	return ce
}

// apiMessage is the API's error message without the request dump the SDK
// puts in Error() (which includes the URL and would be noise to the user).
func apiMessage(e *anthropic.Error) string {
	var body struct {
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := jsonUnmarshalString(e.RawJSON(), &body); err == nil && body.Error.Message != "" {
		if e.StatusCode > 0 {
			return fmt.Sprintf("%s (%d): %s", body.Error.Type, e.StatusCode, body.Error.Message)
		}
		return fmt.Sprintf("%s: %s", body.Error.Type, body.Error.Message)
	}
	return fmt.Sprintf("HTTP %d %s", e.StatusCode, string(e.Type()))
}

// retryAfter reads retry-after-ms, then retry-after (seconds or a date).
func retryAfter(h http.Header) time.Duration {
	if v := h.Get("retry-after-ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := h.Get("retry-after")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// Backoff returns the wait before retry attempt n (1-based): the server's
// retry-after when given (capped at max), else exponential from base with
// jitter.
type Backoff struct {
	Base, Max time.Duration
}

// Delay computes the wait.
func (b Backoff) Delay(attempt int, retryAfter time.Duration) time.Duration {
	maxD := b.Max
	if maxD <= 0 {
		maxD = 60 * time.Second
	}
	if retryAfter > 0 {
		return min(retryAfter, maxD)
	}
	d := b.Base << min(attempt-1, 10)
	if d <= 0 || d > maxD {
		d = maxD
	}
	// Up to 25% jitter, so agents behind one gateway do not retry in step.
	return d - time.Duration(rand.Int64N(int64(d)/4+1))
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
