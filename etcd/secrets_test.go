package etcd

// secrets_test.go: TLS and credentials for stores on etcd — user/role auth
// on a one-member cluster (the right password opens the store, a wrong one
// or none is a clear ErrOption), secret files refused when the group or
// others may read them (the control skips the check), a real TLS server
// (an embedded etcd with a CA and a loopback-IP certificate made here):
// the right CA connects, another CA fails; and no error text or log line
// ever holds a secret.
//
// May touch: a one-member cluster of its own, an embedded etcd server of
// its own, files in the test's temporary directory.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/psbase/psbase"
	"github.com/psbase/psbase/etcd/etcdtest"
)

// syncBuf is a log sink the tests read.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeFile writes a file of the test's with mode.
func writeFile(t *testing.T, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

// leak returns the first text that holds a secret, or "".
func leak(secrets []string, texts ...string) string {
	for _, s := range secrets {
		for _, x := range texts {
			if strings.Contains(x, s) {
				return x
			}
		}
	}
	return ""
}

// noSecret fails t if any text holds any secret.
func noSecret(t *testing.T, secrets []string, texts ...string) {
	t.Helper()
	if x := leak(secrets, texts...); x != "" {
		t.Fatalf("a secret appears in %q", x)
	}
}

var schemaX = []psbase.Field{{Name: "x", Type: psbase.Int}}

func TestAuthCredentialsFile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member")
	}
	const pass, wrong = "s3cret-Pa55word", "not-the-Pa55word"
	secrets := []string{pass, wrong}
	cl := etcdtest.Start(t, etcdtest.Options{Members: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.UserAdd(ctx, "root", pass); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	base := "etcd://" + strings.Join(hostsOf(cl.Endpoints()), ",") + "/authed?dial_timeout=3s"
	logs := &syncBuf{}
	lopt := psbase.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	good := writeFile(t, "cred", "root:"+pass+"\n", 0o600)
	s, err := psbase.Create(ctx, base+"&credentials="+url.QueryEscape(good), schemaX, lopt, psbase.WithLockTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("create with the right credentials: %v", err)
	}
	if _, err := s.Insert(ctx, psbase.Values{"x": 1}); err != nil {
		t.Fatal(err)
	}
	if rep, err := s.Check(ctx); err != nil || !rep.OK() {
		t.Fatalf("check: %+v %v", rep, err)
	}
	s.Close()

	var texts []string
	bad := writeFile(t, "wrong", "root:"+wrong+"\n", 0o600)
	_, err = psbase.Open(ctx, base+"&credentials="+url.QueryEscape(bad), lopt)
	if !errors.Is(err, psbase.ErrOption) || !strings.Contains(err.Error(), "refused the credentials") {
		t.Fatalf("open with a wrong password = %v, want ErrOption naming the refusal", err)
	}
	t.Log(err)
	texts = append(texts, err.Error())
	_, err = psbase.Open(ctx, base, lopt)
	if err == nil {
		t.Fatal("open without credentials on a cluster with auth succeeded")
	}
	t.Log(err)
	texts = append(texts, err.Error())
	for _, body := range []string{"root\n", ":" + wrong, "root:\n"} {
		f := writeFile(t, "malformed", body, 0o600)
		_, err := psbase.Open(ctx, base+"&credentials="+url.QueryEscape(f), lopt)
		if !errors.Is(err, psbase.ErrOption) {
			t.Fatalf("credentials file %q: %v", body, err)
		}
		texts = append(texts, err.Error())
	}
	// Credentials in the URL itself stay refused, and unprinted.
	_, err = psbase.Open(ctx, "etcd://root:"+pass+"@"+hostsOf(cl.Endpoints())[0]+"/authed", lopt)
	if !errors.Is(err, psbase.ErrOption) {
		t.Fatalf("credentials in the URL: %v", err)
	}
	texts = append(texts, err.Error(), logs.String())
	noSecret(t, secrets, texts...)
	// The check above can fail: a text that holds a secret is caught.
	t.Run("control", func(t *testing.T) {
		if leak(secrets, "x "+wrong+" y") == "" {
			t.Fatal("leak missed a secret in a text")
		}
	})
}

func TestSecretFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("mode bits are not Windows' access control")
	}
	open := writeFile(t, "cred", "root:hunter2hunter2\n", 0o644)
	raw := "etcd://127.0.0.1:1/x?credentials=" + url.QueryEscape(open)
	_, _, err := parseURL(raw)
	if !errors.Is(err, psbase.ErrOption) || !strings.Contains(err.Error(), "group or others") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("a world-readable credentials file: %v", err)
	}
	key := writeFile(t, "key.pem", "not a key", 0o640)
	cert := writeFile(t, "cert.pem", "not a cert", 0o644)
	if _, _, err := parseURL("etcd://127.0.0.1:1/x?cert=" + url.QueryEscape(cert) + "&key=" + url.QueryEscape(key)); !errors.Is(err, psbase.ErrOption) || !strings.Contains(err.Error(), "group or others") {
		t.Fatalf("a group-readable key file: %v", err)
	}
	if _, _, err := parseURL("etcd://127.0.0.1:1/x?cert=" + url.QueryEscape(cert)); !errors.Is(err, psbase.ErrOption) {
		t.Fatalf("cert without key: %v", err)
	}
	// Negative control: without the check the readable file is taken.
	t.Run("nocheck", func(t *testing.T) {
		weakSecrets = true
		defer func() { weakSecrets = false }()
		c, _, err := parseURL(raw)
		if err != nil || c.Password != "hunter2hunter2" {
			t.Fatalf("with the permission check off: %v; the control expects the file accepted", err)
		}
	})
}

// testPKI writes a CA and a server certificate for 127.0.0.1 signed by it
// into dir, and returns the files' paths.
func testPKI(t *testing.T, dir, prefix string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: prefix + " test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	w := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, prefix+name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return w("ca.pem", "CERTIFICATE", caDER), w("server.pem", "CERTIFICATE", srvDER), w("server-key.pem", "EC PRIVATE KEY", keyDER)
}

// freePort returns a loopback port free just now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd server")
	}
	dir := t.TempDir()
	caFile, certFile, keyFile := testPKI(t, dir, "good-")
	otherCA, _, _ := testPKI(t, dir, "other-")
	// One embedded member serving clients over TLS only (its peer port is
	// plain: it has no peers).
	cfg := embed.NewConfig()
	cfg.Name = "tls"
	cfg.Dir = filepath.Join(dir, "data")
	cu, _ := url.Parse(fmt.Sprintf("https://127.0.0.1:%d", freePort(t)))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = "tls=" + pu.String()
	cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile = certFile, keyFile
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		t.Fatal("the TLS member is not ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := "etcd://" + cu.Host + "/tls?dial_timeout=3s"
	s, err := psbase.Create(ctx, base+"&cacert="+url.QueryEscape(caFile), schemaX)
	if err != nil {
		t.Fatalf("create over TLS with the server's CA: %v", err)
	}
	if _, err := s.Insert(ctx, psbase.Values{"x": 1}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	keyPEM, _ := os.ReadFile(keyFile)
	for name, raw := range map[string]string{
		"another CA": base + "&cacert=" + url.QueryEscape(otherCA),
		"plain":      base,
	} {
		start := time.Now()
		octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := psbase.Open(octx, raw)
		ocancel()
		if err == nil {
			t.Fatalf("%s: open succeeded", name)
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%s: open took %v", name, time.Since(start))
		}
		t.Logf("%s: %v", name, err)
		noSecret(t, []string{string(keyPEM)}, err.Error())
		if name == "another CA" && !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("%s: the error does not say the certificate was refused: %v", name, err)
		}
	}
	if _, err := psbase.Open(ctx, base+"&cacert="+url.QueryEscape(keyFile)); !errors.Is(err, psbase.ErrOption) {
		t.Fatalf("a cacert file without a certificate: %v", err)
	}
}
