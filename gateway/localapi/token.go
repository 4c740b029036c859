package localapi

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TokenFileName is the token file's name inside the data directory.
const TokenFileName = "api.token"

// tokenBytes is the token's entropy; it travels hex-encoded.
const tokenBytes = 32

// TokenPath returns where EnsureToken keeps the token of dataDir.
func TokenPath(dataDir string) string { return filepath.Join(dataDir, TokenFileName) }

// EnsureToken returns the local API token kept in <dataDir>/api.token,
// creating the directory and a fresh random token (file mode 0600) when
// there is none. An existing token is reused, so CLI sessions survive a
// daemon restart; a token file readable by others is tightened to 0600.
func EnsureToken(dataDir string) (string, error) {
	return EnsureTokenFile(TokenPath(dataDir))
}

// EnsureTokenFile is EnsureToken for an explicit file (the gateway's
// local_api_token_file).
func EnsureTokenFile(path string) (string, error) {
	tok, err := ReadTokenFile(path)
	switch {
	case err == nil:
		if err := tighten(path); err != nil {
			return "", err
		}
		return tok, nil
	case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errEmptyToken):
		return "", err
	}
	tok, err = newToken()
	if err != nil {
		return "", err
	}
	if err := writeToken(path, tok); err != nil {
		return "", err
	}
	return tok, nil
}

var errEmptyToken = errors.New("token file is empty")

// ReadTokenFile reads a token file: its first line, trimmed. It is an error
// when the file is missing or holds no token.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read api token: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	tok := strings.TrimSpace(line)
	if tok == "" {
		return "", fmt.Errorf("read api token %s: %w", path, errEmptyToken)
	}
	return tok, nil
}

func tighten(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("check api token: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("restrict api token file: %w", err)
		}
	}
	return nil
}

func newToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate api token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// writeToken writes the token to a temporary file (created 0600) and
// renames it into place, so a reader never sees half a token.
func writeToken(path, tok string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create api token directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".api.token-*")
	if err != nil {
		return fmt.Errorf("create api token: %w", err)
	}
	tmp := f.Name()
	_, werr := f.WriteString(tok + "\n")
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write api token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("install api token: %w", err)
	}
	return nil
}

// tokenEqual compares a presented token with the expected one in constant
// time (for equal lengths; the length itself is not secret).
func tokenEqual(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
