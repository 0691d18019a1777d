package client

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/oip/grpcwire"
)

const frameHeaderLen = 9

// connError is a protocol error that ends the connection with a GOAWAY
// carrying code.
type connError struct {
	code   http2.ErrCode
	reason string
}

func (e connError) Error() string {
	return fmt.Sprintf("protocol error from the peer (%v): %s", e.code, e.reason)
}

// readLoop reads frames until the connection fails, then fails its
// streams.
func (cc *conn) readLoop() {
	err := cc.readFrames()
	var ce connError
	if errors.As(err, &ce) {
		cc.writeGoAway(ce.code)
	}
	cc.mu.Lock()
	if cc.dead && cc.err != nil {
		err = cc.err // the connection was closed on purpose, or a write failed first
	}
	cc.mu.Unlock()
	cc.fail(err)
}

// readFrames dispatches frames. The frames of every call (DATA, HEADERS,
// CONTINUATION, WINDOW_UPDATE, RST_STREAM, PING) are parsed here from the
// read buffer, allocating nothing; the rest go through the Framer.
func (cc *conn) readFrames() error {
	for {
		if err := cc.beforeRead(frameHeaderLen); err != nil {
			return err
		}
		fh, err := cc.fr.ReadFrameHeader()
		if err != nil {
			return framerError(err)
		}
		if err := cc.beforeRead(int(fh.Length)); err != nil {
			return err
		}
		switch fh.Type {
		case http2.FrameData, http2.FrameHeaders, http2.FrameContinuation,
			http2.FrameWindowUpdate, http2.FrameRSTStream, http2.FramePing:
			p, err := cc.br.Peek(int(fh.Length)) // fh.Length <= the max frame size < the buffer
			if err != nil {
				return err
			}
			err = cc.onFrame(fh, p)
			_, _ = cc.br.Discard(len(p))
			if err != nil {
				return err
			}
		default:
			f, err := cc.fr.ReadFrameForHeader(fh)
			if err != nil {
				return framerError(err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				err = cc.onSettings(f)
			case *http2.GoAwayFrame:
				cc.onGoAway(f)
			case *http2.PushPromiseFrame:
				err = connError{http2.ErrCodeProtocol, "PUSH_PROMISE, which SETTINGS_ENABLE_PUSH 0 forbids"}
			}
			if err != nil {
				return err
			}
		}
	}
}

// framerError turns the Framer's connection errors into connError.
func framerError(err error) error {
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		return connError{http2.ErrCode(ce), err.Error()}
	}
	if errors.Is(err, http2.ErrFrameTooLarge) {
		return connError{http2.ErrCodeFrameSize, "frame larger than SETTINGS_MAX_FRAME_SIZE"}
	}
	return err
}

func (cc *conn) onFrame(fh http2.FrameHeader, p []byte) error {
	switch fh.Type {
	case http2.FrameData:
		return cc.onData(fh, p)
	case http2.FrameHeaders:
		if fh.StreamID == 0 {
			return connError{http2.ErrCodeProtocol, "HEADERS on stream 0"}
		}
		if fh.Flags.Has(http2.FlagHeadersPadded) {
			if len(p) == 0 || int(p[0]) > len(p)-1 {
				return connError{http2.ErrCodeProtocol, "HEADERS padding longer than the frame"}
			}
			p = p[1 : len(p)-int(p[0])]
		}
		if fh.Flags.Has(http2.FlagHeadersPriority) {
			if len(p) < 5 {
				return connError{http2.ErrCodeFrameSize, "HEADERS too short for its priority"}
			}
			p = p[5:]
		}
		cc.hstream = fh.StreamID
		cc.hend = fh.Flags.Has(http2.FlagHeadersEndStream)
		return cc.onHeaderFragment(p, true, fh.Flags.Has(http2.FlagHeadersEndHeaders))
	case http2.FrameContinuation:
		// The Framer checked that it follows its stream's HEADERS.
		return cc.onHeaderFragment(p, false, fh.Flags.Has(http2.FlagContinuationEndHeaders))
	case http2.FrameWindowUpdate:
		if len(p) != 4 {
			return connError{http2.ErrCodeFrameSize, "WINDOW_UPDATE of the wrong size"}
		}
		return cc.onWindowUpdate(fh.StreamID, binary.BigEndian.Uint32(p)&0x7fffffff)
	case http2.FrameRSTStream:
		if len(p) != 4 {
			return connError{http2.ErrCodeFrameSize, "RST_STREAM of the wrong size"}
		}
		if fh.StreamID == 0 {
			return connError{http2.ErrCodeProtocol, "RST_STREAM on stream 0"}
		}
		return cc.onReset(fh.StreamID, http2.ErrCode(binary.BigEndian.Uint32(p)))
	case http2.FramePing:
		if len(p) != 8 {
			return connError{http2.ErrCodeFrameSize, "PING of the wrong size"}
		}
		if fh.StreamID != 0 {
			return connError{http2.ErrCodeProtocol, "PING on a stream"}
		}
		if fh.Flags.Has(http2.FlagPingAck) {
			return nil // we send no pings
		}
		var data [8]byte
		copy(data[:], p)
		cc.lockWrite()
		err := cc.fr.WritePing(true, data)
		cc.unlockWriteReader()
		return err
	}
	return nil
}

// idleLocked reports whether id names a stream this side never opened.
func (cc *conn) idleLocked(id uint32) bool {
	return id&1 == 0 || id >= cc.nextID
}

func (cc *conn) onData(fh http2.FrameHeader, p []byte) error {
	id := fh.StreamID
	if id == 0 {
		return connError{http2.ErrCodeProtocol, "DATA on stream 0"}
	}
	n := int64(fh.Length) // padding counts against the windows too
	if n > cc.recvWin {
		return connError{http2.ErrCodeFlowControl, "DATA beyond the connection window"}
	}
	cc.recvWin -= n
	cc.recvUnacked += n
	data := p
	if fh.Flags.Has(http2.FlagDataPadded) {
		if len(p) == 0 || int(p[0]) > len(p)-1 {
			return connError{http2.ErrCodeProtocol, "DATA padding longer than the frame"}
		}
		data = p[1 : len(p)-int(p[0])]
	}
	var streamUpdate uint32
	cc.mu.Lock()
	cs := cc.streams[id]
	switch {
	case cs == nil:
		if cc.idleLocked(id) {
			cc.mu.Unlock()
			return connError{http2.ErrCodeProtocol, "DATA on an idle stream"}
		}
		// A stream this side ended: only the connection window counts.
	case n > cs.recvWin:
		cc.finishLocked(cs, nil, status.Error(codes.Internal, "grpcwire: the server sent DATA beyond the stream's flow-control window"))
	case !cs.gotHeaders:
		cc.finishLocked(cs, nil, status.Error(codes.Internal, "grpcwire: the server sent DATA before HEADERS"))
	default:
		cs.recvWin -= n
		if err := cc.addData(cs, data); err != nil {
			cc.finishLocked(cs, nil, err)
			break
		}
		if fh.Flags.Has(http2.FlagDataEndStream) {
			cs.remoteClosed = true
			cc.finishLocked(cs, nil, status.Error(codes.Internal, "grpcwire: the server closed the stream without sending trailers"))
			break
		}
		cs.recvUnacked += n
		if cs.recvUnacked >= int64(cc.cl.opts.StreamWindow)/4 {
			streamUpdate = uint32(cs.recvUnacked)
			cs.recvWin += cs.recvUnacked
			cs.recvUnacked = 0
		}
	}
	cc.mu.Unlock()
	var connUpdate uint32
	if cc.recvUnacked >= int64(cc.cl.opts.ConnWindow)/4 {
		connUpdate = uint32(cc.recvUnacked)
		cc.recvWin += cc.recvUnacked
		cc.recvUnacked = 0
	}
	if streamUpdate == 0 && connUpdate == 0 {
		return nil
	}
	cc.lockWrite()
	var err error
	if connUpdate > 0 {
		err = cc.fr.WriteWindowUpdate(0, connUpdate)
	}
	if streamUpdate > 0 && err == nil {
		err = cc.fr.WriteWindowUpdate(id, streamUpdate)
	}
	cc.unlockWriteReader()
	return err
}

// addData adds DATA bytes to cs's response message.
func (cc *conn) addData(cs *call, data []byte) error {
	for len(data) > 0 {
		if cs.gotMsg {
			return status.Error(codes.Internal, "grpcwire: the server sent more than one response message to a unary call")
		}
		if cs.npre < grpcwire.PrefixLen {
			k := copy(cs.pre[cs.npre:], data)
			cs.npre += k
			data = data[k:]
			if cs.npre < grpcwire.PrefixLen {
				return nil
			}
			compressed, n, err := grpcwire.ParsePrefix(cs.pre[:])
			if err != nil {
				return status.Error(codes.Internal, "grpcwire: the server's response: "+err.Error())
			}
			if compressed {
				return status.Error(codes.Internal, "grpcwire: compressed response without grpc-encoding")
			}
			if uint64(n) > uint64(cc.cl.opts.MaxMessageSize) {
				return status.Errorf(codes.ResourceExhausted, "grpcwire: received message larger than max (%d vs. %d)", n, cc.cl.opts.MaxMessageSize)
			}
			cs.msg = make([]byte, n)
			cs.nmsg = 0
		}
		k := copy(cs.msg[cs.nmsg:], data)
		cs.nmsg += k
		data = data[k:]
		cs.gotMsg = cs.nmsg == len(cs.msg)
	}
	return nil
}

// onHeaderFragment decodes a fragment of a header block. Blocks are
// decoded whether or not their stream is still open, to keep the hpack
// decoder's state in step with the peer's encoder.
func (cc *conn) onHeaderFragment(frag []byte, first, endHeaders bool) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cs := cc.streams[cc.hstream]
	if cs == nil && cc.idleLocked(cc.hstream) {
		return connError{http2.ErrCodeProtocol, "HEADERS on an idle stream"}
	}
	if cs != nil && first {
		cs.hsize = 0
		cs.httpStatus = 0
		cs.ctSeen, cs.ctOK = false, false
		cs.hasStatus, cs.badStatus = false, false
		cs.grpcMsg = ""
	}
	cc.hcur = cs
	_, err := cc.hdec.Write(frag)
	if err == nil && endHeaders {
		err = cc.hdec.Close()
	}
	cc.hcur = nil
	if err != nil {
		if errors.Is(err, hpack.ErrStringLength) && cs != nil {
			// The decoder's state is lost with the field: the
			// connection cannot go on.
			cc.finishLocked(cs, nil, status.Error(codes.Internal, "grpcwire: the server's header list is larger than allowed"))
		}
		return connError{http2.ErrCodeCompression, "hpack: " + err.Error()}
	}
	if endHeaders && cs != nil {
		cc.endHeaderBlock(cs, cc.hend)
	}
	return nil
}

// emit records a decoded header field of the stream cc.hcur.
func (cc *conn) emit(f hpack.HeaderField) {
	cs := cc.hcur
	if cs == nil {
		return
	}
	cs.hsize += f.Size()
	switch f.Name {
	case ":status":
		if !cs.gotHeaders {
			cs.httpStatus, _ = strconv.Atoi(f.Value)
		}
	case "content-type":
		cs.ctSeen = true
		cs.ctOK = isGRPCContentType(f.Value)
	case "grpc-status":
		v, err := strconv.Atoi(f.Value)
		cs.hasStatus = true
		cs.badStatus = err != nil || v < 0
		cs.grpcStatus = v
	case "grpc-message":
		cs.grpcMsg = f.Value
	case "grpc-encoding":
		cs.encoding = f.Value
	}
}

// isGRPCContentType accepts application/grpc and its subtypes
// (application/grpc+proto, application/grpc;...).
func isGRPCContentType(v string) bool {
	rest, ok := strings.CutPrefix(v, grpcwire.ContentType)
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// endHeaderBlock acts on a complete header block of cs: the response
// headers, a trailers-only response, or the trailers.
func (cc *conn) endHeaderBlock(cs *call, endStream bool) {
	if cs.hsize > cc.maxHdrList {
		cc.finishLocked(cs, nil, status.Errorf(codes.Internal, "grpcwire: the server's header list is larger than allowed (%d > %d bytes)", cs.hsize, cc.maxHdrList))
		return
	}
	if endStream {
		cs.remoteClosed = true
	}
	if !cs.gotHeaders {
		cs.gotHeaders = true
		switch {
		case cs.httpStatus == 0:
			cc.finishLocked(cs, nil, status.Error(codes.Internal, "grpcwire: malformed header: missing HTTP status"))
			return
		case cs.httpStatus != 200:
			cc.finishLocked(cs, nil, status.Errorf(httpStatusCode(cs.httpStatus),
				"grpcwire: unexpected HTTP status code received from server: %d", cs.httpStatus))
			return
		case !cs.ctOK:
			cc.finishLocked(cs, nil, status.Error(codes.Internal, "grpcwire: malformed header: missing or wrong HTTP content-type"))
			return
		case cs.encoding != "" && cs.encoding != "identity":
			cc.finishLocked(cs, nil, status.Errorf(codes.Internal, "grpcwire: the server sent grpc-encoding %q, which this client does not accept", cs.encoding))
			return
		}
		if !endStream {
			return
		}
		// Trailers-only.
	} else if !endStream {
		cc.finishLocked(cs, nil, status.Error(codes.Internal, "grpcwire: the server sent trailers without END_STREAM"))
		return
	}
	switch {
	case !cs.hasStatus:
		cc.finishLocked(cs, nil, status.Error(codes.Internal, "grpcwire: the server sent no grpc-status"))
	case cs.badStatus:
		cc.finishLocked(cs, nil, status.Error(codes.Internal, "grpcwire: the server sent a malformed grpc-status"))
	case cs.grpcStatus != int(codes.OK):
		cc.finishLocked(cs, nil, status.Error(codes.Code(cs.grpcStatus), grpcwire.DecodeMessage(cs.grpcMsg)))
	case !cs.gotMsg:
		cc.finishLocked(cs, nil, status.Error(codes.Internal, "grpcwire: the server sent no response message to a unary call"))
	default:
		cc.finishLocked(cs, cs.msg, nil)
	}
}

// httpStatusCode maps an HTTP status that is not 200 to a gRPC code, as
// gRPC's http-grpc-status-mapping.md says.
func httpStatusCode(s int) codes.Code {
	switch s {
	case 400:
		return codes.Internal
	case 401:
		return codes.Unauthenticated
	case 403:
		return codes.PermissionDenied
	case 404:
		return codes.Unimplemented
	case 429, 502, 503, 504:
		return codes.Unavailable
	}
	return codes.Unknown
}

// finishLocked ends cs with its outcome and signals its caller. Only the
// remover of cs from the streams map may call it, once.
func (cc *conn) finishLocked(cs *call, resp []byte, err error) {
	delete(cc.streams, cs.id)
	if cs.waiting {
		cs.waiting = false
		cc.nwaiting--
	}
	cs.resp, cs.err = resp, err
	cs.done <- struct{}{}
}

func (cc *conn) onWindowUpdate(id, inc uint32) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if id == 0 {
		if inc == 0 {
			return connError{http2.ErrCodeProtocol, "WINDOW_UPDATE of 0 on the connection"}
		}
		if int64(cc.sendWin)+int64(inc) > maxWindow {
			return connError{http2.ErrCodeFlowControl, "connection window over 2^31-1"}
		}
		cc.sendWin += int32(inc)
		if cc.nwaiting > 0 {
			for _, cs := range cc.streams {
				cc.wakeLocked(cs)
			}
		}
		return nil
	}
	cs := cc.streams[id]
	if cs == nil {
		if cc.idleLocked(id) {
			return connError{http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream"}
		}
		return nil
	}
	if inc == 0 || int64(cs.sendWin)+int64(inc) > maxWindow {
		cc.finishLocked(cs, nil, status.Error(codes.Internal, "grpcwire: the server sent a bad stream WINDOW_UPDATE"))
		return nil
	}
	cs.sendWin += int32(inc)
	cc.wakeLocked(cs)
	return nil
}

func (cc *conn) onReset(id uint32, code http2.ErrCode) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cs := cc.streams[id]
	if cs == nil {
		if cc.idleLocked(id) {
			return connError{http2.ErrCodeProtocol, "RST_STREAM on an idle stream"}
		}
		return nil
	}
	cs.remoteClosed = true
	cs.peerGone = true
	msg := "grpcwire: stream terminated by RST_STREAM with error code: " + code.String()
	if code == http2.ErrCodeRefusedStream {
		msg = "grpcwire: " + cc.cl.addr + ": stream refused (RST_STREAM REFUSED_STREAM)"
	}
	c := resetCode(code)
	if c == codes.Canceled && !cs.dl.IsZero() && !time.Now().Before(cs.dl) {
		// The peer cancels a call whose deadline passed (grpc-timeout).
		c = codes.DeadlineExceeded
	}
	cc.finishLocked(cs, nil, status.Error(c, msg))
	return nil
}

// resetCode maps a RST_STREAM error code to a gRPC code, as grpc-go does.
func resetCode(c http2.ErrCode) codes.Code {
	switch c {
	case http2.ErrCodeRefusedStream:
		return codes.Unavailable
	case http2.ErrCodeCancel:
		return codes.Canceled
	case http2.ErrCodeEnhanceYourCalm, http2.ErrCodeFlowControl:
		return codes.ResourceExhausted
	case http2.ErrCodeInadequateSecurity:
		return codes.PermissionDenied
	}
	return codes.Internal
}

func (cc *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	var tableSize uint32
	var setTable, moreStreams bool
	cc.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return connError{http2.ErrCode(err.(http2.ConnectionError)), "bad " + s.String()}
		}
		switch s.ID {
		case http2.SettingMaxFrameSize:
			cc.peerMaxFrm = s.Val
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - int64(cc.peerInitWin)
			for _, cs := range cc.streams {
				if int64(cs.sendWin)+delta > maxWindow {
					return connError{http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE takes a window over 2^31-1"}
				}
				cs.sendWin += int32(delta)
				if delta > 0 {
					cc.wakeLocked(cs)
				}
			}
			cc.peerInitWin = int32(s.Val)
		case http2.SettingMaxConcurrentStreams:
			moreStreams = moreStreams || s.Val > cc.maxStreams.Load()
			cc.maxStreams.Store(s.Val)
		case http2.SettingHeaderTableSize:
			tableSize, setTable = s.Val, true
		}
		return nil
	})
	cc.mu.Unlock()
	if err != nil {
		return err
	}
	cc.lockWrite()
	if setTable {
		cc.henc.SetMaxDynamicTableSizeLimit(tableSize)
	}
	err = cc.fr.WriteSettingsAck()
	cc.unlockWriteReader()
	if moreStreams {
		cc.cl.slotFreed()
	}
	return err
}

// onGoAway stops new streams on cc and fails those above the last stream
// the peer will process: they were not processed, and may be retried.
func (cc *conn) onGoAway(f *http2.GoAwayFrame) {
	cc.closing.Store(true)
	cc.mu.Lock()
	if !cc.goAway || f.LastStreamID < cc.lastID {
		cc.lastID = f.LastStreamID
	}
	cc.goAway = true
	var refused error
	for id, cs := range cc.streams {
		if id > cc.lastID {
			if refused == nil {
				refused = status.Errorf(codes.Unavailable, "grpcwire: %s: stream refused: the server sent GOAWAY (%v)", cc.cl.addr, f.ErrCode)
			}
			cs.remoteClosed = true
			cs.peerGone = true
			cc.finishLocked(cs, nil, refused)
		}
	}
	cc.mu.Unlock()
	cc.cl.removeConn(cc)
	if cc.nstreams.Load() == 0 {
		cc.shutdownIfIdle()
	}
}
