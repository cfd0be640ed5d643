package pull

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/storage"
)

// A fetch in protocol v2 is one round: the wanted commits, the client's
// shallow boundary and the commits it has, and "done", so that the server
// answers at once with the new shallow boundary and the pack. The pack
// goes to the storage's PackfileWriter where it has one, which is where
// the Repo's bounds on a fetch apply (boundedStorage), as they do to
// go-git's v0 fetch.

// unshallowDepth deepens a shallow history to the whole of it, as
// git fetch --unshallow does.
const unshallowDepth = 1<<31 - 1

// Fetch fetches wants, each with depth commits of history (0: all), into
// st in protocol v2, telling the server that st has haves and their
// history down to st's shallow boundary. It fails with ErrNotV2 when the
// server does not speak v2 or its fetch cannot deepen; the caller fetches
// in v0 then.
func (rm *Remote) Fetch(ctx context.Context, st storage.Storer, wants, haves []plumbing.Hash, depth int) error {
	return rm.converse(ctx, func(c *v2Conn) error { return fetchIn(c, st, wants, haves, depth) })
}

// fetchRef fetches the commit that ref points to on the server, with
// depth commits of history, and returns it: ls-refs and fetch in one
// conversation. A ref that the server does not have is an error matched
// by plumbing.ErrReferenceNotFound.
func (rm *Remote) fetchRef(ctx context.Context, st storage.Storer, ref string, haves []plumbing.Hash, depth int) (plumbing.Hash, error) {
	var tip plumbing.Hash
	err := rm.converse(ctx, func(c *v2Conn) error {
		refs, err := lsRefs(c, []string{ref})
		if err != nil {
			return err
		}
		h, ok := refs[ref]
		if !ok {
			return fmt.Errorf("%w: %s", plumbing.ErrReferenceNotFound, ref)
		}
		tip = h
		return fetchIn(c, st, []plumbing.Hash{h}, haves, depth)
	})
	return tip, err
}

// fetchIn runs the fetch command in c and stores its pack and shallow
// boundary in st.
func fetchIn(c *v2Conn, st storage.Storer, wants, haves []plumbing.Hash, depth int) error {
	features, ok := c.caps["fetch"]
	if !ok {
		return fmt.Errorf("%w: the server offers no fetch command", ErrNotV2)
	}
	shallows, err := st.Shallow()
	if err != nil {
		return fmt.Errorf("read shallow commits: %w", err)
	}
	if depth == 0 && len(shallows) > 0 {
		depth = unshallowDepth
	}
	if depth > 0 && !slices.Contains(strings.Fields(features), "shallow") {
		return fmt.Errorf("%w: the server's fetch cannot deepen", ErrNotV2)
	}
	ans, err := c.send(fetchRequest(wants, haves, shallows, depth))
	if err != nil {
		return err
	}
	// The sections before the pack are bounded as ls-refs is; the pack
	// is bounded where it is stored.
	head := limited(ans)
	section := ""
	var payload [pktline.MaxPayloadSize]byte
sections:
	for {
		kind, line, err := readPkt(head, payload[:])
		if err != nil {
			return fmt.Errorf("fetch answer: %w", err)
		}
		switch kind {
		case pktFlush, pktEnd:
			return fmt.Errorf("%w: the fetch answer has no pack", io.ErrUnexpectedEOF)
		case pktDelim:
			section = ""
			continue
		}
		if section == "" {
			section = line
			if section == "packfile" {
				break sections
			}
			continue
		}
		if section != "shallow-info" {
			continue // acknowledgments, wanted-refs, packfile-uris
		}
		verb, oid, _ := strings.Cut(line, " ")
		h := plumbing.NewHash(oid)
		if h.String() != oid {
			return fmt.Errorf("malformed shallow-info line %.80q", line)
		}
		switch verb {
		case "shallow":
			if !slices.Contains(shallows, h) {
				shallows = append(shallows, h)
			}
		case "unshallow":
			shallows = slices.DeleteFunc(shallows, func(s plumbing.Hash) bool { return s == h })
		default:
			return fmt.Errorf("malformed shallow-info line %.80q", line)
		}
		if len(shallows) > maxShallows {
			return fmt.Errorf("the server named more than %d shallow commits", maxShallows)
		}
	}
	// The pack follows in side-band-64k pkt-lines, up to a flush.
	if err := packfile.UpdateObjectStorage(st, sideband.NewDemuxer(sideband.Sideband64k, ans)); err != nil {
		return err
	}
	return st.SetShallow(shallows)
}

// maxShallows bounds the shallow boundary that a server may make a fetch
// keep.
const maxShallows = 100_000

// fetchRequest is the fetch command: no progress, deltas against offsets,
// the wants, the shallow boundary, the depth, the haves and "done".
func fetchRequest(wants, haves, shallows []plumbing.Hash, depth int) []byte {
	var b bytes.Buffer
	e := pktline.NewEncoder(&b)
	_ = e.EncodeString("command=fetch\n", "agent=outpost\n")
	b.WriteString(delimPkt)
	_ = e.EncodeString("ofs-delta\n", "no-progress\n")
	for _, h := range wants {
		_ = e.EncodeString("want " + h.String() + "\n")
	}
	for _, h := range shallows {
		_ = e.EncodeString("shallow " + h.String() + "\n")
	}
	if depth > 0 {
		_ = e.EncodeString("deepen " + strconv.Itoa(depth) + "\n")
	}
	for _, h := range haves {
		_ = e.EncodeString("have " + h.String() + "\n")
	}
	_ = e.EncodeString("done\n")
	_ = e.Flush()
	return b.Bytes()
}

// Kinds of pkt-line in a v2 answer: data, or one of the special packets.
const (
	pktData = iota
	pktFlush
	pktDelim
	pktEnd
)

// readPkt reads one pkt-line of a v2 answer into buf (which holds the
// largest payload) and returns its kind and, for data, its payload
// without the trailing newline. go-git's scanner does not know the delim
// and response-end packets of v2. An ERR line is an error.
func readPkt(r io.Reader, buf []byte) (kind int, line string, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, "", err
	}
	n, err := strconv.ParseUint(string(hdr[:]), 16, 16)
	if err != nil {
		return 0, "", fmt.Errorf("malformed pkt-line length %q", hdr)
	}
	switch {
	case n == 0:
		return pktFlush, "", nil
	case n == 1:
		return pktDelim, "", nil
	case n == 2:
		return pktEnd, "", nil
	case n < 4 || int(n)-4 > len(buf):
		return 0, "", fmt.Errorf("malformed pkt-line length %q", hdr)
	}
	p := buf[:n-4]
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, "", err
	}
	line = strings.TrimSuffix(string(p), "\n")
	if msg, ok := strings.CutPrefix(line, "ERR "); ok {
		return 0, "", fmt.Errorf("server error: %s", msg)
	}
	return pktData, line, nil
}
