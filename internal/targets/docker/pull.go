package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/distribution/reference"
	"github.com/docker/cli/cli/config"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
)

// pull pulls ref with the credentials of the Docker config file, and reads
// the engine's progress stream to its end: a pull fails inside the stream.
func (d *Driver) pull(ctx context.Context, ref string) error {
	auth, err := d.registryAuth(ref)
	if err != nil {
		return fmt.Errorf("image %s: %w: credentials: %w", ref, ErrPull, err)
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.PullTimeout)
	defer cancel()
	rc, err := d.api.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		return fmt.Errorf("image %s: %w: %w", ref, ErrPull, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("image %s: %w: %w", ref, ErrPull, err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return fmt.Errorf("image %s: %w: %s", ref, ErrPull, m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return fmt.Errorf("image %s: %w: %s", ref, ErrPull, m.Error)
		}
	}
}

// registryAuth returns the encoded credentials for ref's registry from the
// Docker config file (its auths, credsStore and credHelpers), or "" when it
// has none. The file is read on every pull so that a login takes effect
// without a restart.
func (d *Driver) registryAuth(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("parse reference: %w", err)
	}
	cf, err := config.Load(d.opts.DockerConfigDir)
	if err != nil {
		return "", err
	}
	ac, err := cf.GetAuthConfig(reference.Domain(named))
	if err != nil {
		return "", err
	}
	if ac.Username == "" && ac.Password == "" && ac.Auth == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
		return "", nil
	}
	return registry.EncodeAuthConfig(registry.AuthConfig{
		Username:      ac.Username,
		Password:      ac.Password,
		Auth:          ac.Auth,
		ServerAddress: ac.ServerAddress,
		IdentityToken: ac.IdentityToken,
		RegistryToken: ac.RegistryToken,
	})
}
