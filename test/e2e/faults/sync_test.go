package faults

import (
	"strings"
	"sync"
)

var logMu sync.Mutex

// syncWriter lets the agent's stdout and stderr copiers share one builder.
type syncWriter struct{ b *strings.Builder }

func (w *syncWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return w.b.Write(p)
}

func syncString(b *strings.Builder) string {
	logMu.Lock()
	defer logMu.Unlock()
	return b.String()
}
