package registryapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// ListAll reads a paged list of the admin API (the registry's, the
// pipeline runs') page after page, until its end or limit items, and
// reports whether there were more. field names the page's list of items
// ("items", "runs"); every page carries nextPageToken. q is the list's
// query; ListAll sets its pageSize and pageToken.
func ListAll[T any](ctx context.Context, c *Client, path string, q url.Values, field string, limit int) (items []T, more bool, err error) {
	if limit < 1 {
		return nil, false, fmt.Errorf("limit %d: want 1 or more", limit)
	}
	items = []T{}
	for {
		q.Set("pageSize", strconv.Itoa(min(limit-len(items), 1000)))
		var page map[string]json.RawMessage
		if err := c.Call(ctx, "GET", path+"?"+q.Encode(), nil, &page); err != nil {
			return nil, false, err
		}
		var got []T
		if raw, ok := page[field]; ok {
			if err := json.Unmarshal(raw, &got); err != nil {
				return nil, false, fmt.Errorf("%s: %s: %w", path, field, err)
			}
		}
		var next string
		if raw, ok := page["nextPageToken"]; ok {
			if err := json.Unmarshal(raw, &next); err != nil {
				return nil, false, fmt.Errorf("%s: nextPageToken: %w", path, err)
			}
		}
		items = append(items, got...)
		if next == "" {
			return items, false, nil
		}
		if len(items) >= limit {
			return items, true, nil
		}
		q.Set("pageToken", next)
	}
}

// PollOptions configure Poll. Zero values: Min 100ms, Max Min (no
// backoff), no failure bound of either kind.
type PollOptions struct {
	// Min is the wait between two looks after one that saw a change; it
	// doubles after each look that saw none, up to Max.
	Min, Max time.Duration
	// MaxFailures ends the polling after that many failed looks in a
	// row; GiveUpAfter, once looks have failed for that long.
	MaxFailures int
	GiveUpAfter time.Duration
	// OnRetry, when set, is told of a failed look and the wait before
	// the next.
	OnRetry func(err error, wait time.Duration)
}

// Poll calls look until it reports done or fails for good, waiting
// between two calls as opts say. A look that fails with an answer of the
// API below 500 (an unknown resource, a bad request) ends the polling
// with its error; other failures (the API unreachable, restarting, a
// 5xx) are tried again within opts' bounds, after which the last error is
// returned. ctx's end ends the polling with its error.
func Poll(ctx context.Context, opts PollOptions, look func(ctx context.Context) (done, changed bool, err error)) error {
	if opts.Min <= 0 {
		opts.Min = 100 * time.Millisecond
	}
	opts.Max = max(opts.Max, opts.Min)
	delay, failures := opts.Min, 0
	var failingSince time.Time
	for {
		done, changed, err := look(ctx)
		switch {
		case err == nil:
			failures, failingSince = 0, time.Time{}
			if done {
				return nil
			}
			if changed {
				delay = opts.Min
			}
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			var apiErr *APIError
			if errors.As(err, &apiErr) && apiErr.Status < 500 {
				return err
			}
			failures++
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if opts.MaxFailures > 0 && failures >= opts.MaxFailures {
				return fmt.Errorf("%w (after %d tries)", err, failures)
			}
			if opts.GiveUpAfter > 0 && time.Since(failingSince) > opts.GiveUpAfter {
				return fmt.Errorf("%w (failing for %s)", err, opts.GiveUpAfter)
			}
			if opts.OnRetry != nil {
				opts.OnRetry(err, delay)
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, opts.Max)
	}
}
