package images

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/skiff-dev/skiff/machine/atomicfile"
)

// IndexName is a release's image index, beside its images' manifests.
const IndexName = "skiff-images.json"

// Index lists a release's images, one per architecture. Release binaries pin the index's
// digest, and the index pins each manifest's, so one reference serves every platform and
// no file is trusted that the pinned digest does not reach.
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	Kind          string       `json:"kind"` // "index": what tells it from a manifest
	Images        []IndexEntry `json:"images"`
}

// IndexEntry is one architecture's image manifest.
type IndexEntry struct {
	Arch     string `json:"arch"`
	Manifest string `json:"manifest"` // relative to the index, slash-separated: skiff-images_amd64.json
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
}

// isIndex reports whether raw is an index rather than a manifest.
func isIndex(raw []byte) bool {
	var probe struct {
		Kind string `json:"kind"`
	}
	return json.Unmarshal(raw, &probe) == nil && probe.Kind == "index"
}

// ParseIndex decodes and sanity-checks an image index.
func ParseIndex(b []byte) (*Index, error) {
	var x Index
	if err := json.Unmarshal(b, &x); err != nil {
		return nil, fmt.Errorf("image index is not valid JSON: %w", err)
	}
	if x.SchemaVersion != 1 || x.Kind != "index" {
		return nil, fmt.Errorf("image index schema version %d (kind %q) is not supported", x.SchemaVersion, x.Kind)
	}
	seen := map[string]bool{}
	for _, e := range x.Images {
		m := e.Manifest
		if e.Arch == "" || seen[e.Arch] {
			return nil, fmt.Errorf("image index: an entry has no architecture, or %q is listed twice", e.Arch)
		}
		seen[e.Arch] = true
		if m == "" || path.IsAbs(m) || path.Clean(m) != m || strings.HasPrefix(m, "../") || strings.Contains(m, `\`) {
			return nil, fmt.Errorf("image index names an unsafe manifest path %q", m)
		}
		if len(e.SHA256) != 64 {
			return nil, fmt.Errorf("image index: the %s manifest has no valid sha256", e.Arch)
		}
	}
	return &x, nil
}

// Arches are the architectures the index has images for.
func (x *Index) Arches() []string {
	var out []string
	for _, e := range x.Images {
		out = append(out, e.Arch)
	}
	slices.Sort(out)
	return out
}

// For is the entry for arch, or an error naming the architectures the index has.
func (x *Index) For(arch string) (IndexEntry, error) {
	for _, e := range x.Images {
		if e.Arch == arch {
			return e, nil
		}
	}
	return IndexEntry{}, fmt.Errorf("the image index has images for %s, none for %s (this host): use a release built for %s, or --image with one", strings.Join(x.Arches(), ", "), arch, arch)
}

// installFromIndex installs the manifest the index lists for opt.Arch, pinned by the
// index. The index is kept in the cache by its digest, so a pinned reference to it
// resolves without the network afterwards.
func installFromIndex(ctx context.Context, raw []byte, digest string, src source, unpinned bool, cacheDir string, opt Options) (*Installed, error) {
	x, err := ParseIndex(raw)
	if err != nil {
		return nil, err
	}
	arch := opt.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	e, err := x.For(arch)
	if err != nil {
		return nil, err
	}
	imagesDir := filepath.Join(cacheDir, "images")
	if err := os.MkdirAll(imagesDir, 0o755); err != nil {
		return nil, fmt.Errorf("install image: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(imagesDir, "index-sha256-"+digest+".json"), raw, 0o644); err != nil {
		return nil, fmt.Errorf("install image: %w", err)
	}
	inst, err := Install(ctx, src.location(e.Manifest)+"@sha256:"+e.SHA256, cacheDir, opt)
	if err != nil {
		return nil, err
	}
	inst.Unpinned = unpinned
	return inst, nil
}

// cachedPinned is the manifest or index with digest pinned from the cache, or nil.
func cachedPinned(imagesDir, pinned string) []byte {
	if pinned == "" {
		return nil
	}
	for _, p := range []string{filepath.Join(imagesDir, "sha256-"+pinned, "manifest.json"), filepath.Join(imagesDir, "index-sha256-"+pinned+".json")} {
		if raw, err := os.ReadFile(p); err == nil {
			return raw // its digest is checked against pinned as any download's is
		}
	}
	return nil
}

// statusError is a failed download's one-line error: the URL, the status and, for a file
// the server does not have, what to do.
func statusError(u string, resp *http.Response) error {
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
		return fmt.Errorf("download %s: %s: the server has no such file; check the image URL (--image, SKIFF_IMAGE) or that the release was published whole (its SHA256SUMS lists every file)", u, resp.Status)
	}
	return fmt.Errorf("download %s: %s", u, resp.Status)
}
