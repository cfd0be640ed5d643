package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"syscall"
)

// ErrInsecure is matched by errors.Is when a credential file is readable by
// others than its owner or owned by someone other than root: the agent runs
// as root and refuses to use a key that another user could have read or
// replaced.
var ErrInsecure = errors.New("insecure credential file")

// InsecureFileError names a credential file whose permissions the agent
// refuses, and how to fix them.
type InsecureFileError struct {
	Field string // the configuration field that names it, such as "source.auth.ssh_key_file"
	Path  string
	Mode  fs.FileMode
	UID   uint32
	// Owner is true when the owner is wrong; otherwise the mode is.
	Owner bool
}

func (e *InsecureFileError) Error() string {
	if e.Owner {
		return fmt.Sprintf("%s %s is owned by uid %d, not root: fix it with chown root:root %s", e.Field, e.Path, e.UID, e.Path)
	}
	return fmt.Sprintf("%s %s has mode %04o, open to group or others: fix it with chmod 600 %s", e.Field, e.Path, e.Mode.Perm(), e.Path)
}

// Is makes errors.Is(err, ErrInsecure) true.
func (e *InsecureFileError) Is(target error) bool { return target == ErrInsecure }

// CheckCredentials refuses credential files that group or others may read or
// that are not owned by root (or by the user running the agent, so that an
// unprivileged demo works): the SSH key, the password and token files, and
// the configuration file itself when a URL in it carries a password. Every
// such file is reported, not only the first. A file that does not exist is
// left to the code that reads it, which says so.
func CheckCredentials(cfg *Config) error {
	type named struct{ field, path string }
	files := []named{
		{"source.auth.ssh_key_file", cfg.Source.Auth.SSHKeyFile},
		{"source.auth.password_file", cfg.Source.Auth.PasswordFile},
		{"source.auth.token_file", cfg.Source.Auth.TokenFile},
	}
	if cfg.File != "" && (urlHasPassword(cfg.Source.URL) || urlHasPassword(cfg.Status.Remote)) {
		files = append(files, named{"configuration file (a URL in it holds a password)", cfg.File})
	}
	var errs []error
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if err := checkPrivate(f.field, f.path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkPrivate checks one credential file's owner and mode. It follows
// symlinks: what matters is the file whose content is read.
func checkPrivate(field, path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
			return &InsecureFileError{Field: field, Path: path, Mode: fi.Mode(), UID: st.Uid, Owner: true}
		}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return &InsecureFileError{Field: field, Path: path, Mode: fi.Mode()}
	}
	return nil
}

// urlHasPassword reports whether raw is a URL whose user information holds a
// password (https://user:secret@host/...).
func urlHasPassword(raw string) bool {
	if !strings.Contains(raw, "://") || !strings.Contains(raw, "@") {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil {
		// An unparseable URL with an "@" may still hold a secret.
		return true
	}
	_, ok := u.User.Password()
	return ok
}
