package file

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// maxBefore is the largest content kept for a diff; a larger one is kept
// as its size and hash, which is all a diff of it shows.
const maxBefore = 256 << 10

// before reads what the file at name holds now, for the diff of a change.
// It is read only when the content differs, so a pass with nothing to
// change reads nothing more. A file that cannot be read gives nil: the
// change is still reported, without a diff.
func (d *Driver) before(name string) *spec.Before {
	var b *spec.Before
	_ = d.readParent(name, func(pfd int) error {
		fd, err := openFile(pfd, name)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxBefore+1))
		if err != nil {
			return err
		}
		if len(data) <= maxBefore {
			b = &spec.Before{Content: data, Size: int64(len(data))}
			return nil
		}
		h := sha256.New()
		h.Write(data)
		n, err := io.Copy(h, f)
		if err != nil {
			return err
		}
		b = &spec.Before{Size: int64(len(data)) + n, Sum: hex.EncodeToString(h.Sum(nil))}
		return nil
	})
	return b
}
