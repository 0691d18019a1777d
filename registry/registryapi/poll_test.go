package registryapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestListAll pages through a list of 7 items 3 at a time (the server's
// page size), to the end or to the limit.
func TestListAll(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, _ := strconv.Atoi(r.URL.Query().Get("pageToken"))
		size, _ := strconv.Atoi(r.URL.Query().Get("pageSize"))
		size = min(size, 3)
		page := map[string]any{"runs": []int{}}
		var items []int
		for i := from; i < min(from+size, 7); i++ {
			items = append(items, i)
		}
		page["runs"] = items
		if from+size < 7 {
			page["nextPageToken"] = strconv.Itoa(from + size)
		}
		_ = json.NewEncoder(w).Encode(page)
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, more, err := ListAll[int](t.Context(), c, "/l", url.Values{}, "runs", 100)
	if err != nil || more || len(got) != 7 || got[6] != 6 {
		t.Errorf("all: %v more=%v err=%v", got, more, err)
	}
	got, more, err = ListAll[int](t.Context(), c, "/l", url.Values{}, "runs", 4)
	if err != nil || !more || len(got) != 4 {
		t.Errorf("limit 4: %v more=%v err=%v", got, more, err)
	}
	if _, _, err := ListAll[int](t.Context(), c, "/l", url.Values{}, "runs", 0); err == nil {
		t.Error("limit 0 accepted")
	}
}

// TestPoll: done ends it; an answer below 500 ends it at once; other
// failures are tried again up to MaxFailures or GiveUpAfter.
func TestPoll(t *testing.T) {
	fast := PollOptions{Min: time.Millisecond}
	n := 0
	err := Poll(t.Context(), fast, func(context.Context) (bool, bool, error) { n++; return n == 3, false, nil })
	if err != nil || n != 3 {
		t.Errorf("done at the third look: %v after %d", err, n)
	}
	notFound := &APIError{Status: 404, Message: "no such run"}
	n = 0
	err = Poll(t.Context(), fast, func(context.Context) (bool, bool, error) { n++; return false, false, notFound })
	if !errors.Is(err, notFound) || n != 1 {
		t.Errorf("404: %v after %d looks", err, n)
	}
	down := errors.New("connection refused")
	n = 0
	retries := 0
	opts := fast
	opts.MaxFailures = 4
	opts.OnRetry = func(error, time.Duration) { retries++ }
	err = Poll(t.Context(), opts, func(context.Context) (bool, bool, error) { n++; return false, false, down })
	if !errors.Is(err, down) || n != 4 || retries != 3 || !strings.Contains(err.Error(), "after 4 tries") {
		t.Errorf("unreachable: %v after %d looks, %d retries", err, n, retries)
	}
	opts = fast
	opts.GiveUpAfter = 5 * time.Millisecond
	err = Poll(t.Context(), opts, func(context.Context) (bool, bool, error) {
		return false, false, &APIError{Status: 503, Message: "unavailable"}
	})
	if err == nil || !strings.Contains(err.Error(), "failing for") {
		t.Errorf("503 for longer than GiveUpAfter: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Poll(ctx, fast, func(context.Context) (bool, bool, error) { return false, false, nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
