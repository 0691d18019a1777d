package server

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/oip/grpcwire"
)

// headerBlock is the request header block being read: HEADERS and its
// CONTINUATION frames, decoded as they come.
type headerBlock struct {
	stream     uint32
	endStream  bool
	fields     []hpack.HeaderField
	size       uint32 // RFC 9113 header list size so far
	truncated  bool   // over MaxHeaderListSize: fields are dropped
	invalid    string // why the block is malformed (a stream error)
	sawRegular bool
	pseudo     uint8 // the pseudo-header fields seen (pseudoBit)
}

func (s *Server) maxHeaderList() uint32 {
	if s.opts.MaxHeaderListSize == 0 {
		return defaultMaxHeaderListSize
	}
	return s.opts.MaxHeaderListSize
}

func (c *conn) onHeaders(fh frameHeader, p []byte) error {
	id := fh.streamID
	if id == 0 {
		return protocolError("HEADERS on stream 0")
	}
	frag := p
	if fh.has(flagPadded) {
		if len(frag) == 0 {
			return protocolError("HEADERS too short for its padding")
		}
		pad := int(frag[0])
		frag = frag[1:]
		if pad > len(frag) {
			return protocolError("HEADERS padding exceeds the frame")
		}
		frag = frag[:len(frag)-pad]
	}
	var dep uint32
	if fh.has(flagPriority) {
		if len(frag) < 5 {
			return protocolError("HEADERS too short for its priority")
		}
		dep = binary.BigEndian.Uint32(frag) & maxStreamID
		frag = frag[5:]
	}
	h := &c.hdr
	clear(h.fields)
	*h = headerBlock{stream: id, endStream: fh.has(flagEndStream), fields: h.fields[:0]}
	if fh.has(flagPriority) && dep == id {
		h.invalid = "stream depends on itself"
	}
	return c.onHeaderFragment(frag, fh.has(flagEndHeaders))
}

// onHeaderFragment decodes a fragment of the header block, and handles the
// block once it ends.
func (c *conn) onHeaderFragment(frag []byte, end bool) error {
	h := &c.hdr
	if c.contID != 0 && h.invalid != "" {
		return protocolError("CONTINUATION after an invalid header field")
	}
	// As golang.org/x/net/http2 does: a fragment far larger than what the
	// header list may still hold is not worth decoding (CONTINUATION
	// floods).
	var remain int64
	if !h.truncated {
		remain = int64(c.s.maxHeaderList() - h.size)
	}
	if int64(len(frag)) > 4*remain {
		return protocolError("header list too large")
	}
	if _, err := c.hdec.Write(frag); err != nil {
		return connError{http2.ErrCodeCompression, "header block: " + err.Error()}
	}
	if !end {
		c.contID = h.stream
		return nil
	}
	c.contID = 0
	err := c.hdec.Close()
	c.hdec.SetEmitEnabled(true)
	if err != nil {
		return connError{http2.ErrCodeCompression, "header block: " + err.Error()}
	}
	return c.endHeaders()
}

// Pseudo-header fields a request may carry.
const (
	pseudoMethod = 1 << iota
	pseudoScheme
	pseudoPath
	pseudoAuthority
	pseudoProtocol
)

func pseudoBit(name string) uint8 {
	switch name {
	case ":method":
		return pseudoMethod
	case ":scheme":
		return pseudoScheme
	case ":path":
		return pseudoPath
	case ":authority":
		return pseudoAuthority
	case ":protocol":
		return pseudoProtocol
	}
	return 0
}

// emit receives each decoded header field.
func (c *conn) emit(f hpack.HeaderField) {
	h := &c.hdr
	if h.invalid != "" || h.truncated {
		return
	}
	if !validValue(f.Value) {
		h.invalid = "invalid header field value"
	} else if f.IsPseudo() {
		bit := pseudoBit(f.Name)
		switch {
		case h.sawRegular:
			h.invalid = "pseudo-header field after a regular one"
		case bit == 0:
			h.invalid = "unknown pseudo-header field"
		case h.pseudo&bit != 0:
			h.invalid = "duplicate pseudo-header field"
		}
		h.pseudo |= bit
	} else {
		h.sawRegular = true
		if !validName(f.Name) {
			h.invalid = "invalid header field name"
		}
	}
	if h.invalid != "" {
		c.hdec.SetEmitEnabled(false)
		return
	}
	size := f.Size()
	if size > c.s.maxHeaderList()-h.size {
		h.truncated = true
		c.hdec.SetEmitEnabled(false)
		return
	}
	h.size += size
	h.fields = append(h.fields, f)
}

// validName reports whether a regular field name is a lowercase token.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameChar[s[i]] {
			return false
		}
	}
	return true
}

var nameChar = func() (t [256]bool) {
	for _, c := range "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz" {
		t[c] = true
	}
	return t
}()

// validValue reports whether a field value has no control characters but
// tabs (RFC 9110 §5.5).
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// endHeaders handles a whole header block.
func (c *conn) endHeaders() error {
	h := &c.hdr
	id := h.stream
	if id <= c.maxStreamID {
		st := c.stream(id)
		if st == nil {
			// Frames on a stream the server closed are ignored.
			return nil
		}
		if !h.endStream || h.invalid != "" || h.truncated {
			c.resetOpen(st, http2.ErrCodeProtocol)
			return nil
		}
		// Trailers end the request.
		if code := st.onData(nil, 0, true); code != http2.ErrCodeNo {
			c.resetOpen(st, code)
		}
		return nil
	}
	if id%2 == 0 {
		return protocolError("a client opened an even-numbered stream")
	}
	c.mu.Lock()
	c.maxStreamID = id
	ignore := c.goAwaySent
	c.opening = !ignore
	c.mu.Unlock()
	if ignore {
		// After the final GOAWAY: the client knows this stream was not
		// processed.
		return nil
	}
	c.openStream()
	c.mu.Lock()
	c.opening = false
	closeNow := c.idleLocked()
	c.mu.Unlock()
	if closeNow {
		c.closeGracefully()
	}
	return nil
}

// openStream starts a call from its request headers, or answers them
// with an error as grpc-go does.
func (c *conn) openStream() {
	h := &c.hdr
	id := h.stream
	rst := !h.endStream
	if h.invalid != "" {
		c.queue(func(b []byte) []byte { return appendRSTStream(b, id, http2.ErrCodeProtocol) })
		return
	}
	if h.truncated {
		c.earlyAbort(id, "", status.Newf(codes.ResourceExhausted, "request headers exceed the server's limit of %d bytes", c.s.maxHeaderList()), http.StatusOK, rst)
		return
	}
	var (
		isGRPC        bool
		contentType   string
		subtype       string
		httpMethod    string
		path          string
		recvCompress  string
		timeout       time.Duration
		timeoutSet    bool
		protocolError bool
		headerError   *status.Status
	)
	md := make(metadata.MD, len(h.fields))
	vals := make([]string, 0, len(h.fields))
	add := func(k, v string) {
		if old, ok := md[k]; ok {
			md[k] = append(old, v)
			return
		}
		vals = append(vals, v)
		md[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	for _, f := range h.fields {
		switch f.Name {
		case "content-type":
			sub, ok := contentSubtype(f.Value)
			if !ok {
				contentType = f.Value
				continue
			}
			add(f.Name, f.Value)
			subtype, isGRPC = sub, true
		case "grpc-encoding":
			recvCompress = f.Value
		case ":method":
			httpMethod = f.Value
		case ":path":
			path = f.Value
		case "grpc-timeout":
			timeoutSet = true
			var err error
			if timeout, err = grpcwire.DecodeTimeout(f.Value); err != nil {
				headerError = status.Newf(codes.Internal, "malformed grpc-timeout: %v", err)
			}
		case "connection":
			// "Transports must consider requests containing the Connection
			// header as malformed" (gRFC A41).
			protocolError = true
		default:
			if reservedHeader(f.Name) && f.Name != ":authority" && f.Name != "user-agent" {
				continue
			}
			v := f.Value
			if strings.HasSuffix(f.Name, "-bin") {
				b, err := decodeBinHeader(v)
				if err != nil {
					headerError = status.Newf(codes.Internal, "malformed binary metadata %q in header %q: %v", v, f.Name, err)
					continue
				}
				v = string(b)
			}
			add(f.Name, v)
		}
	}
	// The checks, and their answers, are grpc-go's, in its order.
	if len(md[":authority"]) > 1 || len(md["host"]) > 1 {
		c.earlyAbort(id, subtype, status.Newf(codes.Internal, "num values of :authority: %v, num values of host: %v, both must only have 1 value as per HTTP/2 spec",
			len(md[":authority"]), len(md["host"])), http.StatusBadRequest, rst)
		return
	}
	if protocolError {
		c.queue(func(b []byte) []byte { return appendRSTStream(b, id, http2.ErrCodeProtocol) })
		return
	}
	if !isGRPC {
		c.earlyAbort(id, subtype, status.Newf(codes.InvalidArgument, "invalid gRPC request content-type %q", contentType), http.StatusUnsupportedMediaType, rst)
		return
	}
	if headerError != nil {
		c.earlyAbort(id, subtype, headerError, http.StatusBadRequest, rst)
		return
	}
	if len(md[":authority"]) == 0 {
		if host, ok := md["host"]; ok {
			md[":authority"] = host
		}
	}
	delete(md, "host")
	if len(md[":authority"]) == 0 {
		c.earlyAbort(id, subtype, status.New(codes.Internal, "no host or :authority header present"), http.StatusBadRequest, rst)
		return
	}
	c.mu.Lock()
	full := uint32(len(c.streams)) >= c.s.opts.MaxConcurrentStreams
	c.mu.Unlock()
	if full {
		c.queue(func(b []byte) []byte { return appendRSTStream(b, id, http2.ErrCodeRefusedStream) })
		return
	}
	if httpMethod != http.MethodPost {
		c.earlyAbort(id, subtype, status.Newf(codes.Internal, "Received a HEADERS frame with :method %q which should be POST", httpMethod), http.StatusMethodNotAllowed, rst)
		return
	}

	st := &stream{c: c, id: id, method: path, subtype: subtype, sendQuota: c.peerInitialWindow}
	if timeoutSet {
		st.bctx, st.cancel = context.WithTimeout(context.Background(), timeout)
	} else {
		st.bctx, st.cancel = context.WithCancel(context.Background())
	}
	ctx := metadata.NewIncomingContext(st.baseContext(), md)
	if in := c.s.opts.InTapHandle; in != nil {
		c.tapInfo = tap.Info{FullMethodName: path, Header: md}
		tctx, err := in(ctx, &c.tapInfo)
		c.tapInfo = tap.Info{}
		if err != nil {
			st.cancel()
			s, ok := status.FromError(err)
			if !ok {
				s = status.New(codes.PermissionDenied, err.Error())
			}
			c.earlyAbort(id, subtype, s, http.StatusOK, rst)
			return
		}
		ctx = tctx
	}
	if ctx.Err() != nil {
		st.cancel()
		c.earlyAbort(id, subtype, status.New(codes.DeadlineExceeded, context.DeadlineExceeded.Error()), http.StatusOK, rst)
		return
	}
	st.ctx = ctx
	hd, msg := c.s.lookup(path)
	if hd == nil {
		st.cancel()
		c.earlyAbort(id, subtype, status.New(codes.Unimplemented, msg), http.StatusOK, rst)
		return
	}
	switch recvCompress {
	case "", "identity":
	case "gzip":
		st.gzip = true
	default:
		st.cancel()
		c.earlyAbort(id, subtype, status.Newf(codes.Unimplemented, "grpc: Decompressor is not installed for grpc-encoding %q", recvCompress), http.StatusOK, rst,
			hpack.HeaderField{Name: "grpc-accept-encoding", Value: acceptEncoding})
		return
	}
	st.h = hd
	st.recvCompress = recvCompress
	st.granted = int64(c.s.opts.InitialWindowSize)
	if h.endStream {
		st.eof = true
		st.remoteDone.Store(true)
	}
	if !c.addStream(st) {
		st.cancel()
		return
	}
	c.s.handlersWG.Add(1)
	c.pending = append(c.pending, st)
}

// acceptEncoding is what the server decompresses.
const acceptEncoding = "identity,gzip"

// earlyAbort answers a stream the server does not start, with headers
// only (grpc-go's writeEarlyAbort), followed by RST_STREAM NO_ERROR when
// the client has more to send.
func (c *conn) earlyAbort(id uint32, subtype string, s *status.Status, httpStatus int, rst bool, extra ...hpack.HeaderField) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return
	}
	c.field(":status", strconv.Itoa(httpStatus))
	c.field("content-type", contentType(subtype))
	c.statusFields(s, nil)
	c.hfields = append(c.hfields, extra...)
	if !c.writeHeaderBlockLocked(id, true) {
		c.wbuf = appendRSTStream(c.wbuf, id, http2.ErrCodeInternal)
		return
	}
	if rst {
		c.wbuf = appendRSTStream(c.wbuf, id, http2.ErrCodeNo)
	}
}

// statusFields adds the status trailers of s to the header block being
// built, and the trailer metadata md.
func (w *writer) statusFields(s *status.Status, md metadata.MD) {
	code := s.Code()
	w.field("grpc-status", strconv.Itoa(int(code)))
	if m := s.Message(); m != "" {
		w.field("grpc-message", grpcwire.EncodeMessage(m))
	}
	details := false
	if code != codes.OK {
		if p := s.Proto(); len(p.GetDetails()) > 0 {
			if b, err := proto.Marshal(p); err == nil {
				w.field(statusDetailsKey, base64.RawStdEncoding.EncodeToString(b))
				details = true
			}
		}
	}
	for k, vv := range md {
		if reservedHeader(k) || details && k == statusDetailsKey {
			continue
		}
		for _, v := range vv {
			w.metadataField(k, v)
		}
	}
}

// metadataField adds a metadata pair to the header block being built:
// its key lowercased, and a binary value base64-encoded.
func (w *writer) metadataField(k, v string) {
	if strings.HasSuffix(k, "-bin") {
		v = base64.RawStdEncoding.EncodeToString([]byte(v))
	}
	if hasUpper(k) {
		k = strings.ToLower(k)
	}
	w.field(k, v)
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

const statusDetailsKey = "grpc-status-details-bin"

// reservedHeader reports whether a header is gRPC's or HTTP/2's own rather
// than metadata (grpc-go's isReservedHeader).
func reservedHeader(k string) bool {
	if k != "" && k[0] == ':' {
		return true
	}
	switch k {
	case "content-type", "user-agent", "grpc-message-type", "grpc-encoding", "grpc-message", "grpc-status", "grpc-timeout", "te":
		return true
	}
	return false
}

func decodeBinHeader(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}

// contentSubtype reads a gRPC content-type (grpc-go's rules):
// application/grpc, optionally followed by "+subtype" or ";parameters".
func contentSubtype(ct string) (string, bool) {
	if ct == grpcwire.ContentType {
		return "", true
	}
	if !strings.HasPrefix(ct, grpcwire.ContentType) {
		return "", false
	}
	switch ct[len(grpcwire.ContentType)] {
	case '+', ';':
		return ct[len(grpcwire.ContentType)+1:], true
	}
	return "", false
}

func contentType(subtype string) string {
	if subtype == "" {
		return grpcwire.ContentType
	}
	return grpcwire.ContentType + "+" + subtype
}
