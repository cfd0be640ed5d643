package gitserver

import (
	"net"
	"sync"
	"sync/atomic"
)

// connSet accepts the connections of a listener, serves each in a goroutine
// of its own, and cuts every open one when it closes. Proxy and Relay share
// it.
type connSet struct {
	l        net.Listener
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
	accepted atomic.Int64
	mu       sync.Mutex
	open     map[net.Conn]struct{}
}

func newConnSet(l net.Listener) *connSet {
	return &connSet{l: l, stop: make(chan struct{}), open: map[net.Conn]struct{}{}}
}

// serve accepts connections until the listener closes, calling handle for
// each in a goroutine that close waits for.
func (s *connSet) serve(handle func(net.Conn)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.l.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				handle(c)
			}()
		}
	}()
}

// close stops accepting, cuts every open connection and waits for the
// handlers. It is safe to call more than once.
func (s *connSet) close() {
	s.once.Do(func() {
		close(s.stop)
		s.l.Close()
		s.mu.Lock()
		for c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// track adds c to the open connections; it is false once close began.
func (s *connSet) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
		return false
	default:
	}
	s.open[c] = struct{}{}
	return true
}

func (s *connSet) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, c)
}
