package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// maxJWKSBytes bounds a JWKS document; real ones are a few kilobytes.
const maxJWKSBytes = 1 << 20

// keySet is one load of the JWKS: the verification keys by kid.
type keySet struct {
	byKID map[string][]jose.JSONWebKey
	n     int
	// gen changes when the keys do, and only then, so that verified
	// tokens stay cached across refreshes that change nothing.
	gen uint64
	// sum is the SHA-256 of the document the keys came from.
	sum [32]byte
	// loaded is when the document was read.
	loaded time.Time
}

// candidates are the keys that may have signed a token with this kid and
// alg: those with the kid (whose own alg, when they state one, is alg),
// or, for a token with no kid, the set's one key if it has one.
func (s *keySet) candidates(kid, alg string) []jose.JSONWebKey {
	if s == nil {
		return nil
	}
	if kid == "" {
		if s.n != 1 {
			return nil
		}
		for _, ks := range s.byKID {
			return compatible(ks, alg)
		}
	}
	return compatible(s.byKID[kid], alg)
}

func compatible(keys []jose.JSONWebKey, alg string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range keys {
		if k.Algorithm == "" || k.Algorithm == alg {
			out = append(out, k)
		}
	}
	return out
}

// jwksSource loads the JWKS from a file or URL and keeps the last good
// load: a failed refresh keeps the keys already known, so an identity
// provider's outage does not lock every caller out.
type jwksSource struct {
	loc       string // a path, or an http(s) URL
	isURL     bool
	client    *http.Client
	timeout   time.Duration
	symmetric bool // accept "oct" keys (HMAC algorithms configured)
	now       func() time.Time
	log       *slog.Logger
	// minRefetch spaces loads asked for by the request path; every is
	// how old the keys may grow before the request path reloads them.
	minRefetch, every time.Duration
	// onLoad, when set, hears of every load's outcome.
	onLoad func(error)

	set atomic.Pointer[keySet]

	// lastAttempt is when a load last began.
	lastAttempt atomic.Pointer[time.Time]

	mu  sync.Mutex // held while loading; guards gen
	gen uint64
}

func (s *jwksSource) current() *keySet { return s.set.Load() }

// refreshIfDue reloads the keys when the request path may: when unknown is
// set (a token named a kid the keys lack) or the keys are older than
// every, and no load was tried in the last minRefetch. Callers with an
// unknown kid, or before any load, wait for a load in progress and then
// use its keys; the others go on with the keys they have, and learn that
// nothing is due without taking a lock.
//
// A refresh due only because the keys are old runs in the background,
// holding mu until it ends: the request that found the keys old goes on
// with them rather than wait for an identity provider that may be slow or
// down (at most FetchTimeout).
func (s *jwksSource) refreshIfDue(now time.Time, unknown bool) error {
	if unknown || s.set.Load() == nil {
		s.mu.Lock()
	} else if !s.due(now, false) || !s.mu.TryLock() {
		return nil
	} else {
		go func() {
			defer s.mu.Unlock()
			if !s.due(now, false) {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			defer cancel()
			if err := s.loadLocked(ctx, now); err != nil {
				s.log.Warn("auth: JWKS refresh failed; keeping the keys already loaded", "err", err)
			}
		}()
		return nil
	}
	defer s.mu.Unlock()
	if !s.due(now, unknown) {
		return nil // not due, or another caller loaded while this one waited
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	return s.loadLocked(ctx, now)
}

func (s *jwksSource) due(now time.Time, unknown bool) bool {
	if set := s.set.Load(); set != nil && !unknown && now.Sub(set.loaded) < s.every {
		return false
	}
	last := s.lastAttempt.Load()
	return last == nil || now.Sub(*last) >= s.minRefetch
}

// refresh reloads the keys now, whatever their age.
func (s *jwksSource) refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.loadLocked(ctx, s.now())
}

func (s *jwksSource) loadLocked(ctx context.Context, now time.Time) error {
	s.lastAttempt.Store(&now)
	err := s.load(ctx, now)
	if s.onLoad != nil {
		s.onLoad(err)
	}
	return err
}

func (s *jwksSource) load(ctx context.Context, now time.Time) error {
	doc, err := s.read(ctx)
	if err != nil {
		return fmt.Errorf("auth: JWKS %s: %w", s.loc, err)
	}
	sum := sha256.Sum256(doc)
	old := s.set.Load()
	if old != nil && old.sum == sum {
		next := *old
		next.loaded = now
		s.set.Store(&next)
		return nil
	}
	set, skipped, err := parseJWKS(doc, s.symmetric)
	if err != nil {
		return fmt.Errorf("auth: JWKS %s: %w", s.loc, err)
	}
	if len(skipped) > 0 {
		s.log.Warn("auth: JWKS keys skipped", "jwks", s.loc, "err", errors.Join(skipped...))
	}
	s.gen++
	set.gen, set.sum, set.loaded = s.gen, sum, now
	s.set.Store(set)
	return nil
}

func (s *jwksSource) read(ctx context.Context) ([]byte, error) {
	if !s.isURL {
		f, err := os.Open(s.loc)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readBounded(f)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.loc, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("answered HTTP %d", resp.StatusCode)
	}
	return readBounded(resp.Body)
}

func readBounded(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxJWKSBytes)
	}
	return b, nil
}

// parseJWKS reads a JWK Set (RFC 7517), keeping the keys that verify
// signatures: public keys (the public half of a private one), and
// symmetric keys only when symmetric is set. A key that does not parse,
// or is for encryption, is skipped rather than failing the set, since
// identity providers publish keys of kinds a verifier need not know.
//
// skipped lists the keys left out for not parsing.
func parseJWKS(doc []byte, symmetric bool) (set *keySet, skipped []error, err error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	d := json.NewDecoder(bytes.NewReader(doc))
	if err := d.Decode(&raw); err != nil {
		return nil, nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	set = &keySet{byKID: map[string][]jose.JSONWebKey{}}
	for i, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := json.Unmarshal(r, &k); err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if secret, sym := k.Key.([]byte); sym {
			if !symmetric {
				continue
			}
			if len(secret) < 32 {
				// RFC 7518 3.2: an HMAC key is at least as long as
				// the hash.
				skipped = append(skipped, fmt.Errorf("key %d (kid %q): HMAC key shorter than 256 bits", i, k.KeyID))
				continue
			}
		} else {
			if !k.IsPublic() {
				k = k.Public()
			}
			if !k.Valid() {
				skipped = append(skipped, fmt.Errorf("key %d (kid %q): not a valid public key", i, k.KeyID))
				continue
			}
		}
		set.byKID[k.KeyID] = append(set.byKID[k.KeyID], k)
		set.n++
	}
	if set.n == 0 {
		if len(skipped) > 0 {
			return nil, nil, fmt.Errorf("no signature verification key in the set: %w", errors.Join(skipped...))
		}
		return nil, nil, errors.New("no signature verification key in the set")
	}
	return set, skipped, nil
}
