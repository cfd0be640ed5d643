package oci

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Auth names a registry's credential files, as a Git source's
// source.auth does. The files are read again at every request, so that a
// rotated token or password needs no restart; their content is never
// logged.
type Auth struct {
	// Username goes with PasswordFile or TokenFile.
	Username string
	// PasswordFile holds the password of Username (HTTP basic auth).
	PasswordFile string
	// TokenFile holds an access token: with Username, sent as its
	// password (the form registries document for CI tokens); alone, sent
	// to the registry as a bearer token.
	TokenFile string
	// CAFile holds PEM certificates trusted for https besides the
	// system's.
	CAFile string
}

// ErrAuthConfig: the credential settings do not make sense together.
var ErrAuthConfig = errors.New("registry credentials")

// Options returns the registry options of a: its credentials, or the
// Docker config.json's when it names none, and its CA file.
func (a Auth) Options() ([]remote.Option, error) {
	var opts []remote.Option
	switch {
	case a.PasswordFile != "" && a.TokenFile != "":
		return nil, fmt.Errorf("%w: set password_file or token_file, not both", ErrAuthConfig)
	case a.PasswordFile != "" && a.Username == "":
		return nil, fmt.Errorf("%w: password_file needs a username", ErrAuthConfig)
	case a.PasswordFile != "" || a.TokenFile != "":
		opts = append(opts, remote.WithAuth(fileAuth(a)))
	default:
		opts = append(opts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: ca file: %w", ErrAuthConfig, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: ca file %s holds no PEM certificate", ErrAuthConfig, a.CAFile)
		}
		tr := remote.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		opts = append(opts, remote.WithTransport(tr))
	}
	return opts, nil
}

// fileAuth reads its files at each Authorization.
type fileAuth Auth

func (f fileAuth) Authorization() (*authn.AuthConfig, error) {
	if f.PasswordFile != "" {
		p, err := readSecret(f.PasswordFile)
		if err != nil {
			return nil, err
		}
		return &authn.AuthConfig{Username: f.Username, Password: p}, nil
	}
	tok, err := readSecret(f.TokenFile)
	if err != nil {
		return nil, err
	}
	if f.Username != "" {
		return &authn.AuthConfig{Username: f.Username, Password: tok}, nil
	}
	return &authn.AuthConfig{RegistryToken: tok}, nil
}

// readSecret reads a one-line secret file; an empty one is an error, not
// an anonymous request.
func readSecret(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrAuthConfig, err)
	}
	s := strings.TrimSpace(string(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))))
	if s == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrAuthConfig, file)
	}
	return s, nil
}
