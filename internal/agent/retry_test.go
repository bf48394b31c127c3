package agent

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{}, 0},
		{http.Header{"Retry-After": {"3"}}, 3 * time.Second},
		{http.Header{"Retry-After": {"0.5"}}, 500 * time.Millisecond},
		{http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"9"}}, 250 * time.Millisecond},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{"Retry-After": {"-4"}}, 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.h); got != tt.want {
			t.Errorf("retryAfter(%v) = %v; want %v", tt.h, got, tt.want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Base: time.Second, Max: 30 * time.Second}
	if got := b.Delay(1, 7*time.Second); got != 7*time.Second {
		t.Errorf("with retry-after 7s: got %v; want 7s", got)
	}
	if got := b.Delay(1, time.Hour); got != 30*time.Second {
		t.Errorf("retry-after capped: got %v; want 30s", got)
	}
	for attempt, base := range map[int]time.Duration{1: time.Second, 3: 4 * time.Second, 20: 30 * time.Second} {
		got := b.Delay(attempt, 0)
		if got > base || got < base*3/4 {
			t.Errorf("attempt %d: got %v; want within [%v, %v]", attempt, got, base*3/4, base)
		}
	}
}

func TestClassifyTransportErrors(t *testing.T) {
	tests := []struct {
		err   error
		retry bool
	}{
		{io.ErrUnexpectedEOF, true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{errIncomplete, true},
		{errors.New("received error while streaming: {\"type\":\"error\"}"), true},
		{errors.New("something odd"), false},
	}
	for _, tt := range tests {
		if got := classify(tt.err).Retryable; got != tt.retry {
			t.Errorf("classify(%v).Retryable = %v; want %v", tt.err, got, tt.retry)
		}
	}
}
