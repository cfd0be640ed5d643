package main

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/outpost-gitops/outpost/internal/oci"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

func newPublishCmd(g *globals) *cobra.Command {
	var repo, rev, signKey, source string
	cmd := &cobra.Command{
		Use:   "publish oci://REGISTRY/REPO:TAG",
		Short: "Pack the environment repository at a commit into a signed OCI artifact and push it",
		Long: `Publish packs the tree of a commit of a local Git repository (--repo, default
the current directory; --rev, default HEAD) into one deterministic layer, pushes
it as an Outpost source artifact to the given reference and, with --sign-key,
pushes an SSH signature over the manifest digest under the tag sha256-HEX.sig.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := oci.ParseRef(args[0])
			if err != nil {
				return usageError{err}
			}
			var signer ssh.Signer
			if signKey != "" {
				pem, err := os.ReadFile(signKey)
				if err != nil {
					return err
				}
				if signer, err = ssh.ParsePrivateKey(pem); err != nil {
					return fmt.Errorf("%s: %w", signKey, err)
				}
			}
			start := time.Now()
			c, err := oci.ReadCommit(cmd.Context(), repo, rev)
			if err != nil {
				return err
			}
			var layer bytes.Buffer
			if err := oci.Pack(&layer, c.Tree); err != nil {
				return err
			}
			// Credentials of the Docker config.json, as docker push's.
			opts, err := oci.Auth{}.Options()
			if err != nil {
				return err
			}
			d, err := oci.Publish(cmd.Context(), ref, oci.Artifact{Layer: layer.Bytes(), Revision: c.Hash, Branch: c.Branch, Source: source, Created: c.Time}, signer, opts...)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s@%s commit %s (%d bytes, %s)\n", ref, d, c.Hash, layer.Len(), time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&repo, "repo", ".", "the Git repository `directory` to publish")
	f.StringVar(&rev, "rev", "", "the `revision` to publish (default HEAD)")
	f.StringVar(&signKey, "sign-key", "", "an unencrypted OpenSSH private key `file` to sign the artifact with")
	f.StringVar(&source, "source-url", "", "the repository's `URL`, recorded as org.opencontainers.image.source")
	return cmd
}
