package pull

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
)

// The cache's objects live in pack files, each with an index. go-git
// writes a fetched pack's index at its final name, then renames the pack
// into place, and syncs neither; a process killed in between leaves an
// index without a pack, or a partial one. go-git lists packs by their
// .pack file and fails every read when one has no usable index, while git
// lists them by their .idx file. tidyPacks brings the directory back to
// packs that both read, and compact replaces packs only once the pack that
// holds their objects is whole and on disk.

// merge steps: a merge stopped after any of them (a killed process, a lost
// machine) leaves every object of the cache readable.
const (
	stepPackWritten  = "pack written"     // the new pack is synced under a temporary name
	stepIndexWritten = "index written"    // its index too
	stepIndexRenamed = "index renamed"    // the index has its final name, the pack not yet
	stepPackRenamed  = "pack renamed"     // both are in place and the directory is synced
	stepOldRemoved   = "old pack removed" // the first of the merged packs is gone
)

// mergeSteps lists the merge steps in order.
var mergeSteps = []string{stepPackWritten, stepIndexWritten, stepIndexRenamed, stepPackRenamed, stepOldRemoved}

// errMergeStopped is returned by a merge that stopMerge stopped.
var errMergeStopped = errors.New("pack merge stopped")

const (
	packPrefix = "pack-"
	tmpPrefix  = "tmp_" // go-git's temporary packs and objects, and the merge's
)

// packDir is the cache's objects/pack directory.
func (r *Repo) packDir() string { return filepath.Join(r.dir, "objects", "pack") }

func packPath(dir string, h plumbing.Hash, ext string) string {
	return filepath.Join(dir, packPrefix+h.String()+"."+ext)
}

// packNames returns the hashes of dir's pack-*.pack and pack-*.idx files,
// and the names of its temporary files.
func packNames(dir string) (packs, idxs []plumbing.Hash, tmps []string, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			tmps = append(tmps, name)
			continue
		}
		rest, isPack := strings.CutPrefix(name, packPrefix)
		hex, ext, ok := strings.Cut(rest, ".")
		h := plumbing.NewHash(hex)
		if !isPack || !ok || h.String() != hex {
			continue
		}
		switch ext {
		case "pack":
			packs = append(packs, h)
		case "idx":
			idxs = append(idxs, h)
		}
	}
	return packs, idxs, tmps, nil
}

// tidyPacks removes what a fetch or a merge that was cut left in
// objects/pack: temporary files, and indexes without their pack (they hold
// no object, and go-git keeps an index it finds in place when the same pack
// comes again, even a partial one). With check, it also decodes every
// pack's index: a pack whose index is missing or broken is indexed again
// when it reads whole, and removed when it does not, as no Git reads a
// pack without an index. It reports whether it indexed or removed a pack,
// so that the store must be opened again. r.mu is held and the cache is
// this process's alone.
func (r *Repo) tidyPacks(check bool) (changed bool) {
	dir := r.packDir()
	packs, idxs, tmps, err := packNames(dir)
	if err != nil {
		r.log.Debug("list packs", "dir", dir, "err", err)
		return false
	}
	for _, name := range tmps {
		if err := os.Remove(filepath.Join(dir, name)); err == nil {
			r.log.Debug("removed a partial fetch or merge", "file", name)
		}
	}
	hasPack := make(map[plumbing.Hash]bool, len(packs))
	for _, h := range packs {
		hasPack[h] = true
	}
	for _, h := range idxs {
		if !hasPack[h] {
			if err := os.Remove(packPath(dir, h, "idx")); err == nil {
				r.log.Debug("removed an index without its pack", "pack", h.String())
			}
		}
	}
	if !check {
		return false
	}
	for _, h := range packs {
		// A pack with a usable index stays, even if it is damaged inside:
		// the objects before the damage can still be read.
		if _, err := decodeIndex(dir, h); err == nil {
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			r.log.Debug("pack index unusable", "pack", h.String(), "err", err)
		}
		idx, err := indexPack(packPath(dir, h, "pack"))
		if err == nil && plumbing.Hash(idx.PackfileChecksum) != h {
			err = fmt.Errorf("pack checksum %s", plumbing.Hash(idx.PackfileChecksum))
		}
		if err == nil {
			err = writeIndex(dir, h, idx)
		}
		if err != nil {
			r.log.Warn("removed a pack that has no usable index and cannot be indexed", "pack", h.String(), "err", err)
			r.removePack(dir, h)
		} else {
			r.log.Info("indexed a pack again", "pack", h.String())
		}
		changed = true
	}
	return changed
}

// removePack removes a pack, then its index, as go-git does: an index left
// alone by a crash is removed by the next tidyPacks.
func (r *Repo) removePack(dir string, h plumbing.Hash) {
	for _, ext := range []string{"pack", "idx"} {
		if err := os.Remove(packPath(dir, h, ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("remove pack", "pack", h.String(), "err", err)
		}
	}
}

// readIndex checks that pack h is whole at both ends (its header and the
// checksum in its trailer) and returns its index. It does not read the
// pack's objects: damage inside is found when they are read.
func readIndex(dir string, h plumbing.Hash) (*idxfile.MemoryIndex, error) {
	p, err := os.Open(packPath(dir, h, "pack"))
	if err != nil {
		return nil, err
	}
	defer p.Close()
	var head [4]byte
	var sum plumbing.Hash
	fi, err := p.Stat()
	if err == nil && fi.Size() < 12+int64(len(sum)) {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		_, err = p.ReadAt(head[:], 0)
	}
	if err == nil {
		_, err = p.ReadAt(sum[:], fi.Size()-int64(len(sum)))
	}
	if err != nil || string(head[:]) != "PACK" || sum != h {
		return nil, fmt.Errorf("pack %s not whole: header %q, trailer %s, %v", h, head, sum, err)
	}
	return decodeIndex(dir, h)
}

// decodeIndex decodes the index of pack h, which checks the index's own
// checksum, and checks that it names pack h.
func decodeIndex(dir string, h plumbing.Hash) (*idxfile.MemoryIndex, error) {
	f, err := os.Open(packPath(dir, h, "idx"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	idx := idxfile.NewMemoryIndex()
	if err := idxfile.NewDecoder(bufferedFile{bufio.NewReader(f), f}).Decode(idx); err != nil {
		return nil, fmt.Errorf("index of %s: %w", h, err)
	}
	if plumbing.Hash(idx.PackfileChecksum) != h {
		return nil, fmt.Errorf("index of %s names pack %s", h, plumbing.Hash(idx.PackfileChecksum))
	}
	return idx, nil
}

// bufferedFile reads a file through a buffer and still tells its size,
// which the index decoder checks.
type bufferedFile struct {
	*bufio.Reader
	f *os.File
}

func (b bufferedFile) Stat() (os.FileInfo, error) { return b.f.Stat() }

// indexPack reads every object of the pack at path, checks its checksum
// and returns its index. The pack must hold the bases of its deltas.
func indexPack(path string) (*idxfile.MemoryIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	w := new(idxfile.Writer)
	p, err := packfile.NewParser(packfile.NewScanner(f), w)
	if err != nil {
		return nil, err
	}
	if _, err := p.Parse(); err != nil {
		return nil, err
	}
	return w.Index()
}

// writeIndex writes the index of pack h durably: a synced temporary file
// renamed into place, then the directory synced.
func writeIndex(dir string, h plumbing.Hash, idx *idxfile.MemoryIndex) error {
	tmp, err := writeTempIndex(dir, idx)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, packPath(dir, h, "idx")); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// writeTempIndex writes idx to a synced, read-only temporary file of dir
// and returns its path.
func writeTempIndex(dir string, idx *idxfile.MemoryIndex) (string, error) {
	return writeTemp(dir, "idx_", func(w io.Writer) error {
		_, err := idxfile.NewEncoder(w).Encode(idx)
		return err
	})
}

// writeTemp writes a read-only temporary file of dir through write, syncs
// it and returns its path. It removes the file when anything fails.
func writeTemp(dir, kind string, write func(io.Writer) error) (string, error) {
	f, err := os.CreateTemp(dir, tmpPrefix+kind)
	if err != nil {
		return "", err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Chmod(0o444)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// syncDir makes the renames and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// compact merges every pack of the cache into one when there are more than
// the Repo's maxPacks, keeping every object (older commits are the
// fallbacks). The merged packs are the ones whose index was read: their
// objects, and the loose ones, go into a new pack that is written, checked
// against that list and synced with its index before any of them is
// removed. A pack that could not be read is neither merged nor removed.
// r.mu is held.
func (r *Repo) compact() error {
	dir := r.packDir()
	packs, _, _, err := packNames(dir)
	if err != nil || len(packs) <= r.maxPacks() {
		return err
	}
	if r.tidyPacks(true) {
		if err := r.reopen(); err != nil {
			return err
		}
		if packs, _, _, err = packNames(dir); err != nil || len(packs) <= r.maxPacks() {
			return err
		}
	}
	seen := map[plumbing.Hash]bool{}
	var hashes, merged []plumbing.Hash
	add := func(h plumbing.Hash) {
		if !seen[h] {
			seen[h] = true
			hashes = append(hashes, h)
		}
	}
	for _, p := range packs {
		idx, err := readIndex(dir, p)
		if err != nil {
			r.log.Warn("pack left out of the merge", "pack", p.String(), "err", err)
			continue
		}
		if err := forEachEntry(idx, add); err != nil {
			r.log.Warn("pack left out of the merge", "pack", p.String(), "err", err)
			continue
		}
		merged = append(merged, p)
	}
	if err := r.store.ForEachObjectHash(func(h plumbing.Hash) error { add(h); return nil }); err != nil {
		return fmt.Errorf("list loose objects: %w", err)
	}
	if len(merged) < 2 {
		return nil
	}
	newPack, err := r.writeMergedPack(dir, hashes)
	if err != nil {
		return err
	}
	removed := 0
	for _, p := range merged {
		if p == newPack {
			continue
		}
		r.removePack(dir, p)
		removed++
		if removed == 1 && r.stopped(stepOldRemoved) {
			return errMergeStopped
		}
	}
	if err := syncDir(dir); err != nil {
		r.log.Debug("sync pack directory", "dir", dir, "err", err)
	}
	// Reopen, so that no lookup goes to a removed pack.
	if err := r.reopen(); err != nil {
		return err
	}
	r.log.Info("merged the clone cache's packs", "packs", len(merged), "objects", len(hashes))
	return nil
}

// stopped reports whether the merge stops after step (Config.stopMerge).
func (r *Repo) stopped(step string) bool { return r.cfg.stopMerge != nil && r.cfg.stopMerge(step) }

// forEachEntry calls f with the hash of each object in idx.
func forEachEntry(idx *idxfile.MemoryIndex, f func(plumbing.Hash)) error {
	iter, err := idx.Entries()
	if err != nil {
		return err
	}
	defer iter.Close()
	for {
		e, err := iter.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		f(e.Hash)
	}
}

// writeMergedPack writes hashes into a new pack with its index and returns
// its hash. The pack is read back whole and must hold exactly hashes
// before it is renamed into place; the index gets its name first, so that
// a crash before the pack's rename leaves an index without a pack, which
// tidyPacks removes. r.mu is held.
func (r *Repo) writeMergedPack(dir string, hashes []plumbing.Hash) (plumbing.Hash, error) {
	var h plumbing.Hash
	tmp, err := writeTemp(dir, "pack_", func(w io.Writer) (err error) {
		h, err = packfile.NewEncoder(w, r.store, false).Encode(hashes, 10)
		return err
	})
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("write merged pack: %w", err)
	}
	if r.stopped(stepPackWritten) {
		return plumbing.ZeroHash, errMergeStopped
	}
	idx, err := indexPack(tmp)
	if err == nil {
		err = sameObjects(idx, h, hashes)
	}
	if err != nil {
		os.Remove(tmp)
		return plumbing.ZeroHash, fmt.Errorf("read merged pack back: %w", err)
	}
	idxTmp, err := writeTempIndex(dir, idx)
	if err != nil {
		os.Remove(tmp)
		return plumbing.ZeroHash, fmt.Errorf("write merged pack's index: %w", err)
	}
	if r.stopped(stepIndexWritten) {
		return plumbing.ZeroHash, errMergeStopped
	}
	if err := os.Rename(idxTmp, packPath(dir, h, "idx")); err != nil {
		os.Remove(tmp)
		os.Remove(idxTmp)
		return plumbing.ZeroHash, err
	}
	if r.stopped(stepIndexRenamed) {
		return plumbing.ZeroHash, errMergeStopped
	}
	if err := os.Rename(tmp, packPath(dir, h, "pack")); err != nil {
		os.Remove(tmp)
		return plumbing.ZeroHash, err
	}
	if err := syncDir(dir); err != nil {
		// The old packs stay: the new one may not be on disk.
		return plumbing.ZeroHash, fmt.Errorf("sync merged pack: %w", err)
	}
	if r.stopped(stepPackRenamed) {
		return plumbing.ZeroHash, errMergeStopped
	}
	return h, nil
}

// sameObjects checks that idx is the index of pack h and holds hashes and
// nothing else.
func sameObjects(idx *idxfile.MemoryIndex, h plumbing.Hash, hashes []plumbing.Hash) error {
	if plumbing.Hash(idx.PackfileChecksum) != h {
		return fmt.Errorf("pack checksum %s, encoder said %s", plumbing.Hash(idx.PackfileChecksum), h)
	}
	n, err := idx.Count()
	if err != nil {
		return err
	}
	if n != int64(len(hashes)) {
		return fmt.Errorf("pack holds %d objects, want %d", n, len(hashes))
	}
	for _, o := range hashes {
		ok, err := idx.Contains(o)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("object %s missing from the merged pack", o)
		}
	}
	return nil
}

// reopen opens the cache's store again, so that it sees the packs on disk.
// r.mu is held.
func (r *Repo) reopen() error {
	repo, err := git.Open(r.storage(), nil)
	if err != nil {
		return err
	}
	r.repo = repo
	return nil
}
