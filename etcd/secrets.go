package etcd

// secrets.go: the TLS files and the credentials file a store URL names
// (?cacert=, ?cert=, ?key=, ?credentials=), read into the backend's
// configuration. Secrets never reach an error or a log line: errors name
// the store's display form and the file's path, never its contents.
//
// May touch: reads the files the URL names (nothing is written).

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/internal/etcdkv"
)

// weakSecrets, a test-only knob, skips the permission check of secret files
// (the negative control of TestSecretFilePermissions).
var weakSecrets bool

// loadSecrets reads the files of files (by query parameter) into c.
func loadSecrets(c *etcdkv.Config, display string, files map[string]string) error {
	ca, cert, key, cred := files["cacert"], files["cert"], files["key"], files["credentials"]
	if (cert == "") != (key == "") {
		return fmt.Errorf("%w: %s: cert= and key= go together (a client certificate and its private key)", psbase.ErrOption, display)
	}
	if ca != "" || cert != "" {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return fmt.Errorf("%w: %s: cacert: %v", psbase.ErrOption, display, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("%w: %s: cacert %s holds no PEM certificate", psbase.ErrOption, display, ca)
			}
			t.RootCAs = pool
		}
		if cert != "" {
			if err := secretFile(display, "key", key); err != nil {
				return err
			}
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				// tls's errors name the files' kinds, never the key's bytes.
				return fmt.Errorf("%w: %s: cert %s and key %s: %v", psbase.ErrOption, display, cert, key, err)
			}
			t.Certificates = []tls.Certificate{pair}
		}
		c.TLS = t
	}
	if cred != "" {
		if err := secretFile(display, "credentials", cred); err != nil {
			return err
		}
		raw, err := os.ReadFile(cred)
		if err != nil {
			return fmt.Errorf("%w: %s: credentials: %v", psbase.ErrOption, display, err)
		}
		line, _, _ := strings.Cut(string(raw), "\n")
		user, pass, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if !ok || user == "" || pass == "" {
			return fmt.Errorf("%w: %s: credentials file %s: want one line USER:PASSWORD (the contents are not shown)", psbase.ErrOption, display, cred)
		}
		c.Username, c.Password = user, pass
	}
	return nil
}

// secretFile refuses a secret file that the group or others may read, or
// that is not a regular file. On Windows the mode bits say nothing about
// who may read a file, and the check is skipped (use the file's ACL).
func secretFile(display, what, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: %s: %s: %v", psbase.ErrOption, display, what, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s: %s file %s is not a regular file", psbase.ErrOption, display, what, path)
	}
	if runtime.GOOS != "windows" && !weakSecrets && fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s: %s file %s may be read by group or others (mode %04o): chmod 600 it", psbase.ErrOption, display, what, path, fi.Mode().Perm())
	}
	return nil
}
