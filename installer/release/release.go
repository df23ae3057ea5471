// Package release makes the parts of a Skiff release that installer/release/build.sh
// does not get from other tools: the image index the binaries pin (the guest images laid
// flat beside it), byte-stable archives of the binaries, the Homebrew formula and the
// wixl-ready WiX source, and the release manifest with SHA256SUMS. Everything it writes is
// a function of its inputs, so that two builds of one commit are the same bytes.
package release

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/installer"
)

// Names of the release's own files.
const (
	ManifestName = "release.json"
	SumsName     = "SHA256SUMS"
)

// Platforms are the CLI's release targets, in the order the release lists them.
var Platforms = []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64", "windows/arm64"}

// ArchiveName is the file the CLI for goos/goarch ships in: a zip on Windows, a tar.gz
// elsewhere (what Homebrew unpacks), holding skiff or skiff.exe at its top.
func ArchiveName(version, goos, goarch string) string {
	ext := ".tar.gz"
	if goos == "windows" {
		ext = ".zip"
	}
	return fmt.Sprintf("skiff_%s_%s_%s%s", version, goos, goarch, ext)
}

// fileSHA256 is the size and sha256 (hex) of the file at p.
func fileSHA256(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", p, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// ImagePrefix starts the name of every guest image file of a release: the index is
// ImagePrefix+".json", an image's manifest ImagePrefix+"_ARCH.json" and its files
// ImagePrefix+"_ARCH_NAME", all in the release's one folder, which a GitHub release
// (no subfolders) can then hold.
const ImagePrefix = "skiff-images"

// WriteIndex moves the images that images/build.sh wrote into built/ARCH/ into dist,
// flat, each manifest's files published under their architecture's names (File.Path),
// and writes the index (images.IndexName) listing the manifests. It returns the index's
// sha256: the digest the release binaries pin.
func WriteIndex(dist, built string) (string, error) {
	found, err := filepath.Glob(filepath.Join(built, "*", "manifest.json"))
	if err != nil {
		return "", err
	}
	x := images.Index{SchemaVersion: 1, Kind: "index"}
	for _, p := range found {
		raw, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		m, err := images.ParseManifest(raw)
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		dir := filepath.Dir(p)
		if m.Arch != filepath.Base(dir) {
			return "", fmt.Errorf("%s is an image for %s, in the folder for %s", p, m.Arch, filepath.Base(dir))
		}
		prefix := ImagePrefix + "_" + m.Arch + "_"
		for i, f := range m.Files {
			m.Files[i].Path = prefix + f.Name
		}
		// Every file goes, the build's notes (packages.lock, trim-report.txt) too.
		ents, err := os.ReadDir(dir)
		if err != nil {
			return "", err
		}
		for _, e := range ents {
			if e.Name() == "manifest.json" || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(dist, prefix+e.Name())); err != nil {
				return "", err
			}
		}
		name := ImagePrefix + "_" + m.Arch + ".json"
		b, err := jsonFile(m)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dist, name), b, 0o644); err != nil {
			return "", err
		}
		sum := sha256.Sum256(b)
		x.Images = append(x.Images, images.IndexEntry{Arch: m.Arch, Manifest: name, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	}
	if len(x.Images) == 0 {
		return "", fmt.Errorf("no image manifests in %s/*/", built)
	}
	b, err := jsonFile(x)
	if err != nil {
		return "", err
	}
	if _, err := images.ParseIndex(b); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dist, images.IndexName), b, 0o644); err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// jsonFile is v as an indented JSON file.
func jsonFile(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return append(b, '\n'), err
}

// WriteArchive writes binary into out (.tar.gz or .zip) as an executable at the top,
// stamped with epoch: no build time, owner or host detail gets in.
func WriteArchive(out, binary string, epoch int64) error {
	data, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	name, mtime := filepath.Base(binary), time.Unix(epoch, 0).UTC()
	var buf bytes.Buffer
	switch {
	case strings.HasSuffix(out, ".tar.gz"):
		// The gzip header's name and time stay empty.
		gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		tw := tar.NewWriter(gz)
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
		if err := tw.Close(); err != nil {
			return err
		}
		if err := gz.Close(); err != nil {
			return err
		}
	case strings.HasSuffix(out, ".zip"):
		zw := zip.NewWriter(&buf)
		hdr := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: mtime}
		hdr.SetMode(0o755)
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("archive %s: want .tar.gz or .zip", out)
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// WritePackaging writes the Homebrew formula into dist, for the darwin and linux archives
// dist holds as served from base, and the WiX source for wixl with its Environment table
// into msiDir, for the MSI build.sh compiles.
func WritePackaging(dist, base, msiDir string) error {
	if base == "" || msiDir == "" {
		return fmt.Errorf("packaging needs -base and -msi")
	}
	// The macOS binaries are cross-built without cgo, so they have no vz: QEMU runs them.
	fo := installer.FormulaOptions{Assets: map[string]installer.Asset{}, MacOSQEMU: true}
	for _, plat := range Platforms {
		goos, goarch, _ := strings.Cut(plat, "/")
		if goos == "windows" {
			continue
		}
		name := ArchiveName(installer.Version, goos, goarch)
		_, sum, err := fileSHA256(filepath.Join(dist, name))
		if err != nil {
			return fmt.Errorf("the formula's %s archive: %w", plat, err)
		}
		fo.Assets[plat] = installer.Asset{URL: strings.TrimSuffix(base, "/") + "/" + name, SHA256: sum}
	}
	rb, err := installer.HomebrewFormula(fo)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dist, "skiff.rb"), []byte(rb), 0o644); err != nil {
		return err
	}
	wxs, err := installer.WixSource(installer.WixOptions{BinarySource: "skiff.exe", ProductCode: installer.ReleaseProductCode(), Wixl: true})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(msiDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(msiDir, "skiff.wxs"), []byte(wxs), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(msiDir, "Environment.idt"), []byte(installer.WixlEnvironmentTable), 0o644)
}

// Manifest is release.json: every file of the release but itself and SHA256SUMS.
type Manifest struct {
	SchemaVersion int     `json:"schemaVersion"`
	Name          string  `json:"name"`
	Version       string  `json:"version"`
	Image         string  `json:"image"` // what the binaries pin: URL@sha256:DIGEST of the image index
	Files         []Entry `json:"files"`
}

// Entry is one file of a release, by its slash-separated path in the release.
type Entry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// WriteManifest writes dist's release.json (image: the reference the binaries pin) and
// SHA256SUMS (sha256sum -c format, release.json included).
func WriteManifest(dist, image string) error {
	m := Manifest{SchemaVersion: 1, Name: "skiff", Version: installer.Version, Image: image}
	err := filepath.WalkDir(dist, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dist, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == ManifestName || rel == SumsName {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file: a static server may not serve it", rel)
		}
		size, sum, err := fileSHA256(p)
		if err != nil {
			return err
		}
		m.Files = append(m.Files, Entry{Name: rel, Size: size, SHA256: sum})
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(m.Files, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	b, err := jsonFile(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dist, ManifestName), b, 0o644); err != nil {
		return err
	}
	ms := sha256.Sum256(b)
	var sums strings.Builder
	for _, e := range append(m.Files, Entry{Name: ManifestName, SHA256: hex.EncodeToString(ms[:])}) {
		fmt.Fprintf(&sums, "%s  %s\n", e.SHA256, e.Name)
	}
	return os.WriteFile(filepath.Join(dist, SumsName), []byte(sums.String()), 0o644)
}

// CheckFormula checks dist's skiff.rb against dist: each url is base/NAME of a file
// there, and the sha256 after it is that file's.
func CheckFormula(dist, base string) (checked int, err error) {
	rb, err := os.ReadFile(filepath.Join(dist, "skiff.rb"))
	if err != nil {
		return 0, err
	}
	var url string
	for _, line := range strings.Split(string(rb), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || (f[0] != "url" && f[0] != "sha256") {
			continue
		}
		v := strings.Trim(f[1], `"`)
		if f[0] == "url" {
			url = v
			continue
		}
		name, ok := strings.CutPrefix(url, strings.TrimSuffix(base, "/")+"/")
		if !ok || strings.Contains(name, "/") {
			return checked, fmt.Errorf("formula url %q is not a file of the release at %s", url, base)
		}
		_, sum, err := fileSHA256(filepath.Join(dist, name))
		if err != nil {
			return checked, fmt.Errorf("formula url %s: %w", url, err)
		}
		if sum != v {
			return checked, fmt.Errorf("formula: %s has sha256 %s, the formula says %s", name, sum, v)
		}
		checked++
	}
	return checked, nil
}
