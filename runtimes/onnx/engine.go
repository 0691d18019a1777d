package onnx

import (
	"reflect"
	"sync"
	"unsafe"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
)

// engine returns the SimpleGo backend all models share, so that its buffer
// pools are shared too. It runs the ops of one execution one after another,
// each on the calling goroutine: SimpleGo's default runs ops on goroutines
// when a single execution is live, and splits every matrix product across
// goroutines, which costs more than it saves on models of this size (a
// goroutine per product doubled iris's latency at batch 1), while
// concurrent requests already fill the cores. The price is that one large
// request on an idle server uses one core.
//
// The one way SimpleGo offers to turn its worker goroutines off is the
// "parallelism=0" option, and it answers that option with
// fmt.Printf("SimpleGo backend: parallelism set to 0") on stdout (gomlx
// v0.26.0, backends/simplego/simplego.go; unchanged upstream since). A
// model server's stdout carries its announce line (supervisor.AnnouncePrefix)
// and nothing else, so the engine is built without the option and its
// parallelism set to 0 by noWorkers instead, before the backend's first
// use, which is when SimpleGo's documentation of SetMaxParallelism allows
// it. Should a SimpleGo release move that field, the option is used after
// all (and prints), and TestEngineQuiet fails to say so.
var engine = sync.OnceValue(func() backends.Backend {
	b, err := simplego.New("ops_sequential")
	if err != nil {
		panic(err) // only on an unknown option, a programming error
	}
	if noWorkers(b) {
		return b
	}
	b, err = simplego.New("ops_sequential,parallelism=0")
	if err != nil {
		panic(err)
	}
	return b
})

// noWorkers sets a SimpleGo backend's worker parallelism to 0, as the
// "parallelism=0" option does without its line on stdout, and reports
// whether it could: b must be a *simplego.Backend whose unexported field
// workers.maxParallelism is an int, as in gomlx v0.26.0. It must run
// before b executes anything.
func noWorkers(b backends.Backend) bool {
	f, ok := maxParallelism(b)
	if !ok {
		return false
	}
	// The field is unexported, so reflect may read it but not set it;
	// its address is b's own memory, which nothing else uses yet.
	*(*int)(unsafe.Pointer(f.UnsafeAddr())) = 0
	return true
}

// maxParallelism finds the workers.maxParallelism field of a SimpleGo
// backend, addressable, and reports whether it has the expected shape.
func maxParallelism(b backends.Backend) (reflect.Value, bool) {
	sb, ok := b.(*simplego.Backend)
	if !ok || sb == nil {
		return reflect.Value{}, false
	}
	w := reflect.ValueOf(sb).Elem().FieldByName("workers")
	if !w.IsValid() || w.Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	f := w.FieldByName("maxParallelism")
	if !f.IsValid() || f.Kind() != reflect.Int || !f.CanAddr() {
		return reflect.Value{}, false
	}
	return f, true
}
