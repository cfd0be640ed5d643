// Package oci packs a repository tree into the single layer of an Outpost
// source artifact and unpacks such a layer, refusing what could leave the
// destination directory.
package oci

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"time"
)

// MediaType is the media type of an Outpost source layer and of the
// artifact's config.
const MediaType = "application/vnd.outpost.source.v1+tar+gzip"

// epoch is the modification time of every entry, so that the same tree always
// packs to the same bytes.
var epoch = time.Unix(0, 0).UTC()

// Pack writes the tree of fsys as a deterministic gzipped tar to w: entries
// sorted by path, owned by 0:0, with a fixed time; only regular files (mode
// 0644 or 0755), directories and symlinks are packed.
func Pack(w io.Writer, fsys fs.FS) error {
	var paths []string
	err := fs.WalkDir(fsys, ".", func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != "." {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	sort.Strings(paths)
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	for _, p := range paths {
		if err := packEntry(tw, fsys, p); err != nil {
			return fmt.Errorf("pack %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func packEntry(tw *tar.Writer, fsys fs.FS, p string) error {
	fi, err := fs.Lstat(fsys, p)
	if err != nil {
		return err
	}
	h := &tar.Header{Name: p, ModTime: epoch, Format: tar.FormatPAX}
	switch m := fi.Mode(); {
	case m.IsDir():
		h.Typeflag, h.Name, h.Mode = tar.TypeDir, p+"/", 0o755
	case m&fs.ModeSymlink != 0:
		target, err := fs.ReadLink(fsys, p)
		if err != nil {
			return err
		}
		h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, target, 0o777
	case m.IsRegular():
		h.Typeflag, h.Size, h.Mode = tar.TypeReg, fi.Size(), 0o644
		if m&0o111 != 0 {
			h.Mode = 0o755
		}
	default:
		return fmt.Errorf("unsupported file type %v", m.Type())
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := fsys.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(tw, f)
	if err == nil && n != h.Size {
		err = fmt.Errorf("size changed while packing")
	}
	return err
}
