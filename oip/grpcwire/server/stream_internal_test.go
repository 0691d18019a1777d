package server

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// TestContextKeysKnown guards the cheap path: peer.FromContext and
// grpc.ServerTransportStreamFromContext are answered by the stream itself.
func TestContextKeysKnown(t *testing.T) {
	if !keysKnown {
		t.Fatal("the peer and stream context keys were not learnt: every call pays two context layers")
	}
}

// TestDerivedContextsJoinTheStream shows that a context a handler or tap
// derives from a call's is a child of the stream's own cancelCtx: its
// cancellation follows synchronously, with no goroutine watching the
// parent (which is what a parent the context package does not recognise
// costs).
func TestDerivedContextsJoinTheStream(t *testing.T) {
	st := &stream{c: &conn{peer: &peer.Peer{}}}
	st.bctx, st.cancel = context.WithCancel(context.Background())
	ctx := metadata.NewIncomingContext(st.baseContext(), metadata.Pairs("k", "v"))
	child, cancelChild := context.WithCancelCause(ctx)
	defer cancelChild(nil)
	st.cancel()
	if child.Err() == nil {
		t.Fatal("a derived context was not cancelled with the stream: the context package watches it with a goroutine")
	}
}
