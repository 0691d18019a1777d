package server

import (
	"encoding/binary"

	"golang.org/x/net/http2"
)

// HTTP/2 frame types and flags (RFC 9113 §6), as the reader and writers
// here use them. golang.org/x/net/http2 names them too; the local copies
// are bytes, which is what the frame header holds.
const (
	frameData         = byte(http2.FrameData)
	frameHeaders      = byte(http2.FrameHeaders)
	framePriority     = byte(http2.FramePriority)
	frameRSTStream    = byte(http2.FrameRSTStream)
	frameSettings     = byte(http2.FrameSettings)
	framePushPromise  = byte(http2.FramePushPromise)
	framePing         = byte(http2.FramePing)
	frameGoAway       = byte(http2.FrameGoAway)
	frameWindowUpdate = byte(http2.FrameWindowUpdate)
	frameContinuation = byte(http2.FrameContinuation)

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

const (
	frameHeaderLen = 9
	// defaultMaxFrameSize is HTTP/2's initial SETTINGS_MAX_FRAME_SIZE: the
	// largest frame the server accepts (it never advertises more) and the
	// largest it sends until the client allows more.
	defaultMaxFrameSize = 16384
	maxFrameSizeLimit   = 1<<24 - 1
	// defaultWindow is HTTP/2's initial flow-control window.
	defaultWindow = 65535
	maxWindow     = 1<<31 - 1
	maxStreamID   = 1<<31 - 1
)

// clientPreface is what every HTTP/2 client sends first.
const clientPreface = http2.ClientPreface

// frameHeader is a parsed 9-byte frame header.
type frameHeader struct {
	length   uint32
	typ      byte
	flags    byte
	streamID uint32
}

func parseFrameHeader(b []byte) frameHeader {
	return frameHeader{
		length:   uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		typ:      b[3],
		flags:    b[4],
		streamID: binary.BigEndian.Uint32(b[5:9]) & maxStreamID,
	}
}

func (h frameHeader) has(f byte) bool { return h.flags&f != 0 }

// appendFrameHeader appends a frame header to b.
func appendFrameHeader(b []byte, length int, typ, flags byte, streamID uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), typ, flags,
		byte(streamID>>24), byte(streamID>>16), byte(streamID>>8), byte(streamID))
}

func appendRSTStream(b []byte, streamID uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 4, frameRSTStream, 0, streamID)
	return binary.BigEndian.AppendUint32(b, uint32(code))
}

func appendWindowUpdate(b []byte, streamID, incr uint32) []byte {
	b = appendFrameHeader(b, 4, frameWindowUpdate, 0, streamID)
	return binary.BigEndian.AppendUint32(b, incr)
}

func appendPing(b []byte, ack bool, data [8]byte) []byte {
	var flags byte
	if ack {
		flags = flagAck
	}
	b = appendFrameHeader(b, 8, framePing, flags, 0)
	return append(b, data[:]...)
}

func appendGoAway(b []byte, lastStreamID uint32, code http2.ErrCode, debug string) []byte {
	b = appendFrameHeader(b, 8+len(debug), frameGoAway, 0, 0)
	b = binary.BigEndian.AppendUint32(b, lastStreamID&maxStreamID)
	b = binary.BigEndian.AppendUint32(b, uint32(code))
	return append(b, debug...)
}

func appendSettings(b []byte, settings ...http2.Setting) []byte {
	b = appendFrameHeader(b, 6*len(settings), frameSettings, 0, 0)
	for _, s := range settings {
		b = binary.BigEndian.AppendUint16(b, uint16(s.ID))
		b = binary.BigEndian.AppendUint32(b, s.Val)
	}
	return b
}

func appendSettingsAck(b []byte) []byte {
	return appendFrameHeader(b, 0, frameSettings, flagAck, 0)
}

// appendHeaderBlock appends a header block as a HEADERS frame and as many
// CONTINUATION frames as maxFrame requires.
func appendHeaderBlock(b []byte, streamID uint32, block []byte, endStream bool, maxFrame int) []byte {
	typ := frameHeaders
	var flags byte
	if endStream {
		flags = flagEndStream
	}
	for {
		n := min(len(block), maxFrame)
		f := flags
		if n == len(block) {
			f |= flagEndHeaders
		}
		b = appendFrameHeader(b, n, typ, f, streamID)
		b = append(b, block[:n]...)
		block = block[n:]
		if len(block) == 0 {
			return b
		}
		typ, flags = frameContinuation, 0
	}
}
