package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"

	"github.com/outpost-gitops/outpost/internal/pull"
)

// Annotations an Outpost source artifact carries.
const (
	AnnotationRevision = "org.opencontainers.image.revision"
	AnnotationSource   = "org.opencontainers.image.source"
	AnnotationBranch   = "dev.outpost.source.branch"
	// AnnotationCreated is the time of the commit the artifact was packed
	// from (RFC 3339). It is covered by the signed digest, and
	// allowed_signers' valid-after and valid-before are checked against
	// it, as against a commit's time.
	AnnotationCreated = "org.opencontainers.image.created"
	// SignatureNamespace is the sshsig namespace of an artifact signature,
	// distinct from git's so a commit signature never verifies an artifact.
	SignatureNamespace = "outpost-oci"
	// SignatureMediaType is the layer media type of a .sig artifact.
	SignatureMediaType = "application/vnd.outpost.signature.v1+sshsig"
)

// ErrUnverified marks an artifact refused by allowed_signers; it is the Git
// source's error, so the agent handles both the same way.
var ErrUnverified = pull.ErrUnverified

// ParseRef parses "oci://HOST/REPO:TAG" (the oci:// prefix is optional).
// Plain HTTP is used only for a loopback registry.
func ParseRef(s string) (name.Reference, error) {
	s = strings.TrimPrefix(s, "oci://")
	var opts []name.Option
	host, _, _ := strings.Cut(s, "/")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(s, append(opts, name.StrictValidation)...)
	if err != nil {
		return nil, fmt.Errorf("oci reference %q: %w", s, err)
	}
	return ref, nil
}

// Artifact is what Publish pushes.
type Artifact struct {
	Layer    []byte // Pack's output
	Revision string
	Branch   string
	Source   string
	// Created is the commit's time; zero leaves the annotation out.
	Created time.Time
}

// Publish pushes a as an artifact under ref and, with a signer, its sshsig
// signature over the manifest digest under the tag sha256-HEX.sig. It returns
// the manifest digest.
func Publish(ctx context.Context, ref name.Reference, a Artifact, signer ssh.Signer, opts ...remote.Option) (v1.Hash, error) {
	ann := map[string]string{AnnotationRevision: a.Revision, AnnotationSource: a.Source, AnnotationBranch: a.Branch}
	if !a.Created.IsZero() {
		ann[AnnotationCreated] = a.Created.UTC().Format(time.RFC3339)
	}
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer(a.Layer, MediaType))
	if err != nil {
		return v1.Hash{}, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), MediaType)
	img = mutate.Annotations(img, ann).(v1.Image)
	opts = append(opts, remote.WithContext(ctx))
	if err := remote.Write(ref, img, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil || signer == nil {
		return d, err
	}
	sig, err := sshsig.Sign(strings.NewReader(d.String()), signer, sshsig.HashSHA512, SignatureNamespace)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("sign %s: %w", d, err)
	}
	sigImg, err := mutate.AppendLayers(empty.Image, static.NewLayer(sshsig.Armor(sig), SignatureMediaType))
	if err != nil {
		return v1.Hash{}, err
	}
	sigImg = mutate.MediaType(sigImg, types.OCIManifestSchema1)
	if err := remote.Write(SignatureTag(ref, d), sigImg, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("push signature: %w", err)
	}
	return d, nil
}

// SignatureTag is the tag of d's signature in ref's repository, named as
// cosign names them: sha256-HEX.sig.
func SignatureTag(ref name.Reference, d v1.Hash) name.Tag {
	return ref.Context().Tag(d.Algorithm + "-" + d.Hex + ".sig")
}

// Head returns the digest ref's tag points at: one HEAD request.
func Head(ctx context.Context, ref name.Reference, opts ...remote.Option) (v1.Hash, error) {
	desc, err := remote.Head(ref, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("head %s: %w", ref, err)
	}
	return desc.Digest, nil
}

// Fetched is an artifact pulled and unpacked.
type Fetched struct {
	Digest   v1.Hash
	Revision string
	Branch   string
	Source   string
	// Created is the commit's time (AnnotationCreated); zero when the
	// artifact does not say.
	Created time.Time
}

// Fetch pulls the artifact with manifest digest d from ref's repository,
// checks its signature when signers is not nil, and unpacks its layer into
// dir. Nothing is written when any check fails. An artifact refused by
// signers returns its annotations, unverified, beside an error wrapping
// ErrUnverified.
func Fetch(ctx context.Context, ref name.Reference, d v1.Hash, signers []pull.AllowedSigner, dir string, opts ...remote.Option) (Fetched, error) {
	opts = append(opts, remote.WithContext(ctx))
	img, err := remote.Image(ref.Context().Digest(d.String()), opts...)
	if err != nil {
		return Fetched{}, fmt.Errorf("fetch %s@%s: %w", ref.Context(), d, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return Fetched{}, fmt.Errorf("fetch %s@%s: %w", ref.Context(), d, err)
	}
	if m.Config.MediaType != MediaType || len(m.Layers) != 1 || m.Layers[0].MediaType != MediaType {
		return Fetched{}, fmt.Errorf("%s@%s is not an Outpost source artifact (config %s, %d layers)", ref.Context(), d, m.Config.MediaType, len(m.Layers))
	}
	f := Fetched{Digest: d, Revision: m.Annotations[AnnotationRevision], Branch: m.Annotations[AnnotationBranch], Source: m.Annotations[AnnotationSource]}
	if c, ok := m.Annotations[AnnotationCreated]; ok {
		if f.Created, err = time.Parse(time.RFC3339, c); err != nil {
			return Fetched{}, fmt.Errorf("%s@%s: annotation %s: %w", ref.Context(), d, AnnotationCreated, err)
		}
	}
	if signers != nil {
		// Without a commit time, the keys must be valid now.
		when := f.Created
		if when.IsZero() {
			when = time.Now()
		}
		if err := verify(ref, d, signers, opts, when); err != nil {
			if errors.Is(err, ErrUnverified) {
				// What the manifest claims, unverified: enough to
				// report the refusal against the commit it names.
				return f, err
			}
			return Fetched{}, err
		}
	}
	if m.Layers[0].Size > MaxLayerBytes {
		return Fetched{}, fmt.Errorf("%w: layer of %d bytes, over %d", ErrHostile, m.Layers[0].Size, MaxLayerBytes)
	}
	l, err := img.LayerByDigest(m.Layers[0].Digest)
	if err != nil {
		return Fetched{}, err
	}
	rc, err := l.Compressed() // verified against its digest as it is read
	if err != nil {
		return Fetched{}, err
	}
	defer rc.Close()
	if err := Unpack(rc, dir); err != nil {
		return Fetched{}, fmt.Errorf("%s@%s: %w", ref.Context(), d, err)
	}
	return f, nil
}

// verify checks the signature of d against signers: by a key they allow
// in SignatureNamespace, valid at when.
func verify(ref name.Reference, d v1.Hash, signers []pull.AllowedSigner, opts []remote.Option, when time.Time) error {
	unverified := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s@%s: %s", ErrUnverified, ref.Context(), d, fmt.Sprintf(format, a...))
	}
	sigImg, err := remote.Image(SignatureTag(ref, d), opts...)
	if err != nil {
		var terr *transport.Error
		if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
			return unverified("not signed (no %s tag)", SignatureTag(ref, d).TagStr())
		}
		return fmt.Errorf("fetch signature of %s@%s: %w", ref.Context(), d, err)
	}
	layers, err := sigImg.Layers()
	if err != nil || len(layers) != 1 {
		return unverified("malformed signature artifact")
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		return fmt.Errorf("fetch signature: %w", err)
	}
	defer rc.Close()
	armored, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	if err != nil {
		return fmt.Errorf("fetch signature: %w", err)
	}
	sig, err := sshsig.Unarmor(armored)
	if err != nil {
		return unverified("malformed signature: %v", err)
	}
	fp := ssh.FingerprintSHA256(sig.PublicKey)
	var reason string
	for _, s := range signers {
		if s.CertAuthority || ssh.FingerprintSHA256(s.Key) != fp {
			continue
		}
		if !s.AllowsNamespace(SignatureNamespace) {
			reason = fmt.Sprintf("key %s is not allowed to sign in namespace %q", fp, SignatureNamespace)
			continue
		}
		if !s.ValidAt(when) {
			reason = fmt.Sprintf("key %s was not valid when the commit was made (%s)", fp, when.UTC().Format(time.RFC3339))
			continue
		}
		if err := sshsig.Verify(bytes.NewReader([]byte(d.String())), sig, s.Key, sig.HashAlgorithm, SignatureNamespace); err != nil {
			return unverified("bad signature by %s: %v", fp, err)
		}
		return nil
	}
	if reason != "" {
		return unverified("%s", reason)
	}
	return unverified("signed by SSH key %s, which is not in allowed_signers", fp)
}
