package bench

import (
	"net"
	"sync"
	"sync/atomic"
)

// connCounter counts the bytes moved on the connections it wrapped. Each
// connection counts into its own atomics, so workers on different
// connections never write the same cache line; a sum walks the open
// connections, and a closed one folds its counts into the totals.
type connCounter struct {
	mu                     sync.Mutex
	open                   map[*countedConn]struct{}
	closedSent, closedRecv int64
}

// countedConn is a net.Conn that counts what it reads and writes.
type countedConn struct {
	net.Conn
	owner      *connCounter
	sent, recv atomic.Int64
	closeOnce  sync.Once
}

// wrap returns c counted by cc.
func (cc *connCounter) wrap(c net.Conn) net.Conn {
	w := &countedConn{Conn: c, owner: cc}
	cc.mu.Lock()
	if cc.open == nil {
		cc.open = make(map[*countedConn]struct{})
	}
	cc.open[w] = struct{}{}
	cc.mu.Unlock()
	return w
}

// total returns the bytes sent and received on every connection so far.
func (cc *connCounter) total() (sent, recv int64) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	sent, recv = cc.closedSent, cc.closedRecv
	for c := range cc.open {
		sent += c.sent.Load()
		recv += c.recv.Load()
	}
	return sent, recv
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.recv.Add(int64(n))
	}
	return n, err
}

func (c *countedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.sent.Add(int64(n))
	}
	return n, err
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		o := c.owner
		o.mu.Lock()
		delete(o.open, c)
		o.closedSent += c.sent.Load()
		o.closedRecv += c.recv.Load()
		o.mu.Unlock()
	})
	return err
}
