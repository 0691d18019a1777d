package server

import (
	"bytes"
	"compress/gzip"
	"io"
	"sync"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rbuf is a stream's receive buffer. Buffers of the classes in rbufSizes
// are pooled; larger ones (a large message's) are left to the collector.
type rbuf struct{ b []byte }

var (
	rbufSizes = [...]int{4 << 10, 32 << 10, 256 << 10}
	rbufPools [len(rbufSizes)]sync.Pool
)

// getRbuf returns an empty buffer that holds at least n bytes.
func getRbuf(n int) *rbuf {
	for i, size := range rbufSizes {
		if n <= size {
			if v := rbufPools[i].Get(); v != nil {
				return v.(*rbuf)
			}
			return &rbuf{b: make([]byte, 0, size)}
		}
	}
	return &rbuf{b: make([]byte, 0, n)}
}

func putRbuf(r *rbuf) {
	for i, size := range rbufSizes {
		if cap(r.b) == size {
			r.b = r.b[:0]
			rbufPools[i].Put(r)
			return
		}
	}
}

var gzipReaders sync.Pool

// gunzip decompresses a gzip message of at most max bytes.
func gunzip(data []byte, max int) ([]byte, error) {
	r := bytes.NewReader(data)
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(r)
	} else {
		err = zr.Reset(r)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "grpc: failed to decompress the received message: %v", err)
	}
	defer gzipReaders.Put(zr)
	out, err := io.ReadAll(io.LimitReader(zr, int64(max)+1))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "grpc: failed to decompress the received message: %v", err)
	}
	if len(out) > max {
		return nil, status.Errorf(codes.ResourceExhausted, "grpc: received message after decompression larger than max %d", max)
	}
	return out, nil
}

// preface returns the server's connection preface: its SETTINGS (those
// grpc-go sends for the same options) and the WINDOW_UPDATE that opens
// the connection's window to InitialConnWindowSize.
func (s *Server) preface() []byte {
	settings := []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: defaultMaxFrameSize}}
	if n := s.opts.MaxConcurrentStreams; n != 1<<32-1 {
		settings = append(settings, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: n})
	}
	if w := s.opts.InitialWindowSize; w != defaultWindow {
		settings = append(settings, http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(w)})
	}
	if n := s.opts.MaxHeaderListSize; n != 0 {
		settings = append(settings, http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: n})
	}
	b := appendSettings(nil, settings...)
	if d := s.opts.InitialConnWindowSize - defaultWindow; d > 0 {
		b = appendWindowUpdate(b, 0, uint32(d))
	}
	return b
}
