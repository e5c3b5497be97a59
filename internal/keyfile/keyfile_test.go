package keyfile

import (
	"os"
	"path/filepath"
	"testing"
)

// CreateNew refuses what is already there, a file or a link (even one
// pointing nowhere), so that a file made between keygen's check and its
// write is never written through; what it creates has the mode asked,
// whatever the umask allows above it.
func TestCreateNewRefusesWhatExists(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing")
	if err := os.WriteFile(existing, []byte("theirs"), 0o644); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{existing, dangling} {
		if f, err := CreateNew(p, 0o600); err == nil {
			f.Close()
			t.Errorf("CreateNew(%s): no error, want it refused", filepath.Base(p))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nowhere")); err == nil {
		t.Error("createNew wrote through the dangling link")
	}
	if b, _ := os.ReadFile(existing); string(b) != "theirs" {
		t.Errorf("the existing file now holds %q", b)
	}
	f, err := CreateNew(filepath.Join(dir, "new"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, err := os.Stat(filepath.Join(dir, "new")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
}
