package payloadlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Logger. Zero values mean the defaults given.
type Options struct {
	// QueueLength bounds the events waiting for a sender; past it Log
	// drops (reason "queue_full"). 0 means 1024.
	QueueLength int
	// QueueBytes bounds the payload bytes the waiting events hold; past
	// it Log drops (reason "queue_full"). 0 means 64 MiB.
	QueueBytes int64
	// Senders is the number of goroutines delivering events. 0 means 2.
	Senders int
	// SendTimeout bounds one delivery to an HTTP sink; a delivery that
	// fails is counted, not retried. 0 means 5 s.
	SendTimeout time.Duration
	// DrainTimeout bounds the delivery of the events still queued when
	// Run's context ends; what is left then is dropped (reason
	// "shutdown"). 0 means 5 s.
	DrainTimeout time.Duration
	// FileRoot, when set, is the directory file sinks are kept in: a file
	// sink is then a path relative to it (see CheckSink) and is opened
	// through an os.Root, so that neither ".." nor a symbolic link takes
	// it elsewhere. A declaration someone sent the admin API must not
	// append to files of their choosing (a shell's startup file, the
	// store). "" allows any path (tests, trusted configuration).
	FileRoot string
	// HTTPClient sends to HTTP sinks (a custom CA, a proxy); nil means a
	// client of its own. Its own timeout, if any, applies besides
	// SendTimeout.
	HTTPClient *http.Client
	// Metrics holds the counters (NewMetrics); nil means counters
	// registered nowhere.
	Metrics *Metrics
}

// Logger logs the payloads of sampled requests and responses of the models
// configured with SetModels, the way KServe's inference logger does: as
// CloudEvents to an HTTP sink, or as JSON lines to a file. Log never
// blocks: events wait in a bounded queue for Run's senders, and are
// dropped and counted when it is full. A Logger is safe for concurrent
// use; a nil *Logger logs nothing.
type Logger struct {
	o       Options
	metrics *Metrics
	queue   chan *event
	bytes   atomic.Int64 // payload bytes held by queued events
	models  atomic.Pointer[map[string]*model]
	closed  atomic.Bool // Run's context ended: Log drops
	running atomic.Bool

	mu    sync.Mutex // serializes SetModels and Run's end
	sinks map[string]sink
	root  *os.Root // Options.FileRoot opened; nil without it
}

// model is one model's configuration as SetModels compiled it.
type model struct {
	name      string
	cfg       ModelConfig
	sink      sink
	redact    []redactPath
	threshold uint64 // sampled when a 63-bit draw is below it
	c         modelCounters
}

// New returns a Logger with no model configured. It starts no goroutine:
// Run delivers.
func New(o Options) (*Logger, error) {
	if o.QueueLength < 0 || o.QueueBytes < 0 || o.Senders < 0 || o.SendTimeout < 0 || o.DrainTimeout < 0 {
		return nil, errors.New("payloadlog: negative queue length, queue bytes, senders or timeout")
	}
	if o.QueueLength == 0 {
		o.QueueLength = 1024
	}
	if o.QueueBytes == 0 {
		o.QueueBytes = 64 << 20
	}
	if o.Senders == 0 {
		o.Senders = 2
	}
	if o.SendTimeout == 0 {
		o.SendTimeout = 5 * time.Second
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 5 * time.Second
	}
	if o.HTTPClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = o.Senders
		o.HTTPClient = &http.Client{Transport: t}
	}
	m := o.Metrics
	if m == nil {
		var err error
		if m, err = NewMetrics(nil); err != nil {
			return nil, err
		}
	}
	l := &Logger{o: o, metrics: m, queue: make(chan *event, o.QueueLength), sinks: map[string]sink{}}
	if o.FileRoot != "" {
		if err := os.MkdirAll(o.FileRoot, 0o750); err != nil {
			return nil, fmt.Errorf("payloadlog: file sinks' directory: %w", err)
		}
		var err error
		if l.root, err = os.OpenRoot(o.FileRoot); err != nil {
			return nil, fmt.Errorf("payloadlog: file sinks' directory: %w", err)
		}
	}
	empty := map[string]*model{}
	l.models.Store(&empty)
	m.watch(l)
	return l, nil
}

// SetModels replaces the logged models' configurations with configs
// (keyed by model name; a model absent, or with no Sink, is not logged).
// It validates them all first and changes nothing on error; it opens the
// file sinks new to it, and closes those no model uses any more (events
// still queued for them then count as failed). Requests begun before the
// swap finish under the configuration they began with.
func (l *Logger) SetModels(configs map[string]ModelConfig) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return errors.New("payloadlog: the logger has stopped")
	}
	next := make(map[string]*model, len(configs))
	type compiled struct {
		d      destination
		paths  []redactPath
		config ModelConfig
	}
	valid := make(map[string]compiled, len(configs))
	for _, name := range slices.Sorted(maps.Keys(configs)) {
		c := configs[name]
		if c.Sink == "" {
			continue
		}
		d, paths, err := c.validate(name)
		if err == nil && l.root != nil {
			err = CheckSink(c)
		}
		if err != nil {
			return err
		}
		valid[name] = compiled{d, paths, c}
	}
	sinks := make(map[string]sink, len(valid))
	var opened []sink
	for _, name := range slices.Sorted(maps.Keys(valid)) {
		c := valid[name]
		k := c.d.key()
		s := sinks[k]
		if s == nil {
			s = l.sinks[k]
		}
		if s == nil {
			if c.d.url != "" {
				s = &httpSink{url: c.d.url, client: l.o.HTTPClient}
			} else {
				fs, err := openFileSink(l.root, c.d.path)
				if err != nil {
					for _, o := range opened {
						_ = o.close()
					}
					return fmt.Errorf("payloadlog: model %q: %w", name, err)
				}
				s = fs
				opened = append(opened, s)
			}
		}
		sinks[k] = s
		next[name] = &model{
			name:      name,
			cfg:       c.config,
			sink:      s,
			redact:    c.paths,
			threshold: uint64(c.config.SampleRate * (1 << 63)),
			c:         l.metrics.forModel(name),
		}
	}
	l.models.Store(&next)
	for k, s := range l.sinks {
		if _, kept := sinks[k]; !kept {
			_ = s.close()
		}
	}
	l.sinks = sinks
	return nil
}

// Handle is what the gateway keeps for one request between Begin and
// Response: whether it is logged, and its event id. The zero Handle (a
// request not logged) does nothing.
type Handle struct {
	l        *Logger
	m        *model
	id       string
	endpoint string
}

// Begin decides whether a request for model, routed to revision, is
// logged (the model's configuration and sample rate), and returns the
// Handle to log its request and response with. id is the request's own id
// when it has one (a Ce-Id or X-Request-Id header, say; nil when not): the
// events carry it as their id, or a new UUID when it is absent or not a
// printable token of at most 128 bytes. The bytes are copied only when the
// request is logged. A request not logged costs a map lookup and no
// allocation.
func (l *Logger) Begin(model, revision string, id []byte) Handle {
	return begin(l, model, revision, id)
}

// Logs reports whether model's requests may be logged at all, so that a
// caller can skip finding a request's id (a copy, from gRPC metadata)
// when they are not.
func (l *Logger) Logs(model string) bool {
	if l == nil {
		return false
	}
	m := (*l.models.Load())[model]
	return m != nil && m.threshold != 0
}

// BeginString is Begin with the id as a string (gRPC metadata).
func (l *Logger) BeginString(model, revision, id string) Handle {
	return begin(l, model, revision, id)
}

func begin[T ~string | ~[]byte](l *Logger, model, revision string, id T) Handle {
	if l == nil {
		return Handle{}
	}
	m := (*l.models.Load())[model]
	if m == nil || m.threshold == 0 {
		return Handle{}
	}
	valid := validID(id)
	if m.cfg.SampleRate < 1 {
		var draw uint64
		if m.cfg.SampleByID && valid {
			draw = hashID(id)
		} else {
			draw = rand.Uint64()
		}
		if draw>>1 >= m.threshold {
			return Handle{}
		}
	}
	h := Handle{l: l, m: m, endpoint: revision}
	if valid {
		h.id = string(id)
	} else {
		h.id = newUUID()
	}
	return h
}

// Logged reports whether h logs anything.
func (h Handle) Logged() bool { return h.m != nil }

// ID returns the events' id, "" when h logs nothing.
func (h Handle) ID() string { return h.id }

// Request logs the request's payload (with its Content-Type) when h is
// logged and the model's mode takes requests. It never blocks: a full
// queue drops the event and counts it. payload is copied when the event is
// queued; the caller may reuse it once Request returns.
func (h Handle) Request(contentType, payload []byte) {
	if h.m == nil || !h.m.cfg.Mode.requests() {
		return
	}
	h.l.enqueue(&h, false, contentType, payload)
}

// Response logs the response's payload as Request does the request's.
// Call it for successful answers only (HTTP 200, gRPC OK): KServe's logger
// logs no error answers.
func (h Handle) Response(contentType, payload []byte) {
	if h.m == nil || !h.m.cfg.Mode.responses() {
		return
	}
	h.l.enqueue(&h, true, contentType, payload)
}

// event is one queued CloudEvent.
type event struct {
	m           *model
	response    bool
	id          string
	endpoint    string
	contentType string
	time        time.Time
	payload     []byte
}

func (ev *event) ceType() string {
	if ev.response {
		return TypeResponse
	}
	return TypeRequest
}

var eventPool = sync.Pool{New: func() any { return new(event) }}

// maxPooledPayload is the largest payload buffer kept for reuse.
const maxPooledPayload = 1 << 20

func (l *Logger) enqueue(h *Handle, response bool, contentType, payload []byte) {
	if l.closed.Load() {
		h.m.c.droppedShutdown.Inc()
		return
	}
	n := int64(len(payload))
	if l.bytes.Add(n) > l.o.QueueBytes {
		l.bytes.Add(-n)
		h.m.c.droppedFull.Inc()
		return
	}
	if len(l.queue) == cap(l.queue) { // full: spare the copy
		l.bytes.Add(-n)
		h.m.c.droppedFull.Inc()
		return
	}
	ev := eventPool.Get().(*event)
	ev.m, ev.response, ev.id, ev.endpoint = h.m, response, h.id, h.endpoint
	ev.contentType = internContentType(contentType)
	ev.time = time.Now()
	ev.payload = append(ev.payload[:0], payload...)
	select {
	case l.queue <- ev:
	default:
		l.bytes.Add(-n)
		h.m.c.droppedFull.Inc()
		l.release(ev)
	}
}

// release returns a delivered (or dropped) event to the pool.
func (l *Logger) release(ev *event) {
	p := ev.payload
	if cap(p) > maxPooledPayload {
		p = nil
	}
	*ev = event{payload: p[:0]}
	eventPool.Put(ev)
}

func internContentType(ct []byte) string {
	switch string(ct) {
	case "application/json":
		return "application/json"
	case "application/octet-stream":
		return "application/octet-stream"
	case "":
		return ""
	}
	return string(ct)
}

// validID reports whether id is usable as a CloudEvent id and an HTTP
// header value: 1 to 128 printable ASCII bytes, no space.
func validID[T ~string | ~[]byte](id T) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func hashID[T ~string | ~[]byte](id T) uint64 {
	// FNV-1a, inline so that the id is not converted.
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	// Spread the low bits FNV leaves weak for short ids.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// newUUID returns a random (version 4) UUID in its text form.
func newUUID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	var s [36]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hex[c>>4], hex[c&0xf]
		j += 2
	}
	return string(s[:])
}

// Run delivers queued events with Options.Senders goroutines until ctx
// ends; then Log drops (reason "shutdown"), and Run delivers what is
// still queued within Options.DrainTimeout, drops the rest (reason
// "shutdown"), closes the sinks and returns nil. A Logger runs once.
func (l *Logger) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("payloadlog: Run called twice")
	}
	// sends ends at the drain deadline: in-flight deliveries fail then.
	sends, stopSends := context.WithCancel(context.Background())
	defer stopSends()
	var wg sync.WaitGroup
	for range l.o.Senders {
		wg.Go(func() { l.sender(ctx, sends) })
	}
	<-ctx.Done()
	l.closed.Store(true)
	deadline := time.AfterFunc(l.o.DrainTimeout, stopSends)
	wg.Wait()
	deadline.Stop()
	for {
		select {
		case ev := <-l.queue:
			l.bytes.Add(-int64(len(ev.payload)))
			ev.m.c.droppedShutdown.Inc()
			l.release(ev)
			continue
		default:
		}
		break
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, s := range l.sinks {
		errs = append(errs, s.close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("payloadlog: close sinks: %w", err)
	}
	return nil
}

// sender delivers events until ctx ends, then those still queued until
// the queue is empty or sends ends. Once ctx has ended it takes no event
// past the drain deadline: those are Run's to drop.
func (l *Logger) sender(ctx, sends context.Context) {
	for ctx.Err() == nil {
		select {
		case ev := <-l.queue:
			l.deliver(sends, ev)
		case <-ctx.Done():
		}
	}
	for sends.Err() == nil {
		select {
		case ev := <-l.queue:
			l.deliver(sends, ev)
		default:
			return
		}
	}
}

// deliver redacts and sends one event, counts the outcome and releases
// it.
func (l *Logger) deliver(sends context.Context, ev *event) {
	defer l.release(ev)
	l.bytes.Add(-int64(len(ev.payload)))
	data := ev.payload
	if len(ev.m.redact) > 0 {
		var ok bool
		if data, ok = redact(data, ev.m.redact); !ok {
			ev.m.c.droppedUnredactable.Inc()
			return
		}
	}
	ctx, cancel := context.WithTimeout(sends, l.o.SendTimeout)
	defer cancel()
	if err := ev.m.sink.send(ctx, ev, data); err != nil {
		ev.m.c.failed.Inc()
		return
	}
	ev.m.c.sent.Inc()
}
