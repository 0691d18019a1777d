// Package router answers "which revision" for each request: a model's
// traffic split across its revisions, tags (latest, prev), revisions pinned
// by version or header, sticky keys, and the share copied to a mirror.
//
// A Table is an immutable snapshot built once by New and read lock-free by
// any number of requests; a Router holds the current one and swaps it
// atomically, so requests in flight finish on the table they started with.
// B is the owner's per-revision backend (the gateway's replica pool,
// batcher and metrics): the router never looks inside it.
package router

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/infergate/infergate/internal/keyhash"
	"github.com/infergate/infergate/oip"
)

// Revision is one immutable version of a model's serving setup.
type Revision[B any] struct {
	// Name is unique within its model, e.g. "iris-00002".
	Name string
	// Number orders a model's revisions; a request may pin a revision by
	// its number as well as by its name.
	Number int
	// Backend is the owner's; the router hands it back from Resolve.
	Backend B
	// Stats counts the revision's answered requests. New gives the table's
	// copy a fresh one when nil; an owner that rebuilds tables passes the
	// same Stats for the same revision so that counts survive a swap.
	Stats *Stats

	hash uint64 // of Name, for sticky choice
}

// Weight is one revision's share of a model's traffic.
type Weight struct {
	Revision string
	// Percent is in (0, 100]; a model's weights sum to 100.
	Percent float64
}

// Mirror copies a share of a model's traffic to a revision: the copy's
// answer is the owner's to judge and never reaches the client.
type Mirror struct {
	Revision string
	// Percent is in (0, 100].
	Percent float64
}

// Model is one model's routing: its addressable revisions, how traffic
// splits across them, and its tags.
type Model[B any] struct {
	Name string
	// Revisions are every revision a request may reach by weight or by
	// pinning, each with a distinct name and number.
	Revisions []*Revision[B]
	// Traffic splits requests that pin nothing; percents sum to 100.
	Traffic []Weight
	// Tags name revisions: tag -> revision name ("latest", "prev").
	Tags map[string]string
	// Mirror, when set, copies a share of the traffic to a revision.
	Mirror *Mirror
}

// Table is an immutable routing snapshot.
type Table[B any] struct {
	models map[string]*model[B]
	names  string // served models, for not-found messages
}

type model[B any] struct {
	name      string
	revs      []*Revision[B]
	byKey     map[string]*Revision[B] // by name, number and tag
	split     []*Revision[B]
	cum       []uint64  // cumulative share of split[i] in [0, 2^64)
	weights   []float64 // split's percents, for sticky choice
	mirror    *Revision[B]
	mirrorCut uint64 // mirror when a draw is below it
	listing   string // revisions and tags, for not-found messages
}

// maxListed bounds the model names a not-found message lists.
const maxListed = 20

// New validates models and builds a Table. Errors name the model and say
// what is wrong; the table is all or nothing.
func New[B any](models []Model[B]) (*Table[B], error) {
	t := &Table[B]{models: make(map[string]*model[B], len(models))}
	var errs []error
	for i := range models {
		m, err := build(&models[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := t.models[m.name]; dup {
			errs = append(errs, fmt.Errorf("router: model %q is declared twice", m.name))
			continue
		}
		t.models[m.name] = m
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(t.models))
	for n := range t.models {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) > maxListed {
		names = append(names[:maxListed], fmt.Sprintf("and %d more", len(t.models)-maxListed))
	}
	t.names = strings.Join(names, ", ")
	return t, nil
}

func build[B any](in *Model[B]) (*model[B], error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("router: model %q: %s", in.Name, fmt.Sprintf(format, args...))
	}
	if in.Name == "" {
		return nil, errors.New("router: a model has no name")
	}
	if len(in.Revisions) == 0 {
		return nil, fail("no revision")
	}
	m := &model[B]{name: in.Name, byKey: make(map[string]*Revision[B], 2*len(in.Revisions)+len(in.Tags))}
	for _, given := range in.Revisions {
		if given == nil || given.Name == "" {
			return nil, fail("a revision has no name")
		}
		// The table keeps its own copy: the caller may hand the same
		// Revision to the next table while this one serves.
		r := new(Revision[B])
		*r = *given
		m.revs = append(m.revs, r)
		num := strconv.Itoa(r.Number)
		if m.byKey[r.Name] != nil || m.byKey[num] != nil {
			return nil, fail("revision %q or number %d is declared twice", r.Name, r.Number)
		}
		if r.Stats == nil {
			r.Stats = new(Stats)
		}
		r.hash = keyhash.Bytes([]byte(r.Name))
		m.byKey[r.Name] = r
		m.byKey[num] = r
	}
	tags := slices.Sorted(maps.Keys(in.Tags))
	for _, tag := range tags {
		r := m.byKey[in.Tags[tag]]
		switch {
		case tag == "":
			return nil, fail("a tag has no name")
		case r == nil:
			return nil, fail("tag %q names revision %q, which is not one of its revisions", tag, in.Tags[tag])
		case m.byKey[tag] != nil && m.byKey[tag] != r:
			return nil, fail("tag %q is also the name or number of another revision", tag)
		}
		m.byKey[tag] = r
	}
	if len(in.Traffic) == 0 {
		return nil, fail("no traffic split")
	}
	var total float64
	for _, w := range in.Traffic {
		r := m.byKey[w.Revision]
		switch {
		case r == nil || r.Name != w.Revision:
			return nil, fail("traffic names revision %q, which is not one of its revisions", w.Revision)
		case !(w.Percent > 0 && w.Percent <= 100):
			return nil, fail("revision %q: traffic percent %v is not in (0, 100]", w.Revision, w.Percent)
		case slices.Contains(m.split, r):
			return nil, fail("revision %q has two traffic entries", w.Revision)
		}
		total += w.Percent
		m.split = append(m.split, r)
		m.weights = append(m.weights, w.Percent)
	}
	if math.Abs(total-100) > 1e-9 {
		return nil, fail("traffic percents sum to %v, not 100", total)
	}
	var acc float64
	for _, p := range m.weights {
		acc += p
		m.cum = append(m.cum, share(acc/total))
	}
	m.cum[len(m.cum)-1] = math.MaxUint64
	if mi := in.Mirror; mi != nil {
		r := m.byKey[mi.Revision]
		switch {
		case r == nil:
			return nil, fail("mirror names revision %q, which is not one of its revisions or tags", mi.Revision)
		case !(mi.Percent > 0 && mi.Percent <= 100):
			return nil, fail("mirror percent %v is not in (0, 100]", mi.Percent)
		}
		m.mirror, m.mirrorCut = r, share(mi.Percent/100)
	}
	var b strings.Builder
	b.WriteString("revisions: ")
	for i, r := range in.Revisions {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%d)", r.Name, r.Number)
	}
	if len(tags) > 0 {
		b.WriteString("; tags: ")
		for i, tag := range tags {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(tag + "=" + in.Tags[tag])
		}
	}
	m.listing = b.String()
	return m, nil
}

// share maps a fraction in [0, 1] onto [0, 2^64).
func share(f float64) uint64 {
	if f >= 1 {
		return math.MaxUint64
	}
	return uint64(f * (1 << 64))
}

// Request is what the router reads from a request.
type Request struct {
	// Model is the model name; it may alias a request buffer.
	Model []byte
	// Pin, when not empty, names a revision: its name, number or a tag.
	Pin []byte
	// Key, when Sticky, keeps a caller on one revision: requests with the
	// same key go to the same revision while the split stays, and a
	// change of weights moves as few keys as it can (weighted rendezvous
	// hashing). See keyhash.Bytes.
	Key    uint64
	Sticky bool
}

// Resolve picks the revision for req and, when the draw says so, a mirror
// revision that should get a copy (nil otherwise; never the chosen one).
// Errors are oip.KindNotFound naming what exists. It does not allocate
// unless it fails.
func (t *Table[B]) Resolve(req Request) (rev, mirror *Revision[B], err error) {
	m, ok := t.models[string(req.Model)]
	if !ok {
		return nil, nil, oip.Errorf(oip.KindNotFound, "model %q not found; served models: %s", req.Model, t.names)
	}
	switch {
	case len(req.Pin) > 0:
		rev = m.byKey[string(req.Pin)]
		if rev == nil {
			return nil, nil, oip.Errorf(oip.KindNotFound, "model %q has no revision or tag %q; %s", req.Model, req.Pin, m.listing)
		}
	case len(m.split) == 1:
		rev = m.split[0]
	case req.Sticky:
		rev = m.split[rendezvous(req.Key, m.split, m.weights)]
	default:
		draw := rand.Uint64()
		for i, c := range m.cum {
			if draw < c {
				rev = m.split[i]
				break
			}
		}
	}
	if m.mirror != nil && m.mirror != rev && rand.Uint64() < m.mirrorCut {
		mirror = m.mirror
	}
	return rev, mirror, nil
}

// Revisions returns a model's revisions in the order given to New; nil
// when the table has no such model.
func (t *Table[B]) Revisions(model string) []*Revision[B] {
	m, ok := t.models[model]
	if !ok {
		return nil
	}
	return slices.Clone(m.revs)
}

// Lookup returns a model's revision by name, number or tag without
// drawing anything; nil when there is none.
func (t *Table[B]) Lookup(model, rev string) *Revision[B] {
	if m, ok := t.models[model]; ok {
		return m.byKey[rev]
	}
	return nil
}

// EachRouted calls fn for every revision that has a share of its model's
// traffic, models in no order.
func (t *Table[B]) EachRouted(fn func(model string, r *Revision[B])) {
	for _, m := range t.models {
		for _, r := range m.split {
			fn(m.name, r)
		}
	}
}

// Each calls fn for every revision of every model, models in no order.
func (t *Table[B]) Each(fn func(model string, r *Revision[B])) {
	for _, m := range t.models {
		for _, r := range m.revs {
			fn(m.name, r)
		}
	}
}

// rendezvous returns the index of the revision with the highest weighted
// rendezvous score for key: -w / ln(u), u a uniform draw from hashing the
// key with the revision's name. Raising one weight moves keys only to that
// revision; lowering it moves keys only away from it.
func rendezvous[B any](key uint64, revs []*Revision[B], weights []float64) int {
	best, bestScore := 0, math.Inf(-1)
	for i, r := range revs {
		h := keyhash.Mix(key ^ r.hash)
		// u in (0, 1): the top 53 bits, offset by half a step.
		u := (float64(h>>11) + 0.5) / (1 << 53)
		score := -weights[i] / math.Log(u)
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// Router holds the current Table. Its methods are safe for concurrent use.
type Router[B any] struct {
	t atomic.Pointer[Table[B]]
}

// Table returns the current snapshot; nil before the first Store.
func (r *Router[B]) Table() *Table[B] { return r.t.Load() }

// Store swaps in t as the current snapshot.
func (r *Router[B]) Store(t *Table[B]) { r.t.Store(t) }
