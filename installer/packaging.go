package installer

import (
	"bytes"
	"crypto/sha1"
	_ "embed"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Maintainer scripts of the Debian package.
var (
	//go:embed deb/postinst
	debPostinst string
	//go:embed deb/prerm
	debPrerm string
	//go:embed deb/postrm
	debPostrm string
)

// DebVersion maps Version to Debian's ordering: a pre-release "1.2.0-rc1" must sort
// before "1.2.0", which "~" does and "-" does not.
func DebVersion(v string) string {
	return strings.ReplaceAll(strings.TrimPrefix(v, "v"), "-", "~")
}

// DebArch maps GOARCH to the Debian architecture name.
func DebArch(goarch string) (string, error) {
	switch goarch {
	case "amd64", "arm64", "riscv64", "s390x", "ppc64el":
		return goarch, nil
	case "386":
		return "i386", nil
	case "arm":
		return "armhf", nil
	case "ppc64le":
		return "ppc64el", nil
	}
	return "", fmt.Errorf("no Debian architecture for GOARCH %q", goarch)
}

// DebControl is the package's DEBIAN/control.
func DebControl(m Meta, debArch string, installedKiB int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: %s\n", m.Name, DebVersion(m.Version), debArch, m.Maintainer)
	fmt.Fprintf(&b, "Installed-Size: %d\nSection: admin\nPriority: optional\nHomepage: %s\n", installedKiB, m.Homepage)
	// QEMU runs the VM on Linux; it is recommended rather than required so the CLI can
	// still drive machines configured with another backend.
	b.WriteString("Recommends: qemu-system-x86 | qemu-system-arm, qemu-utils\n")
	fmt.Fprintf(&b, "Description: %s\n", m.Summary)
	for _, l := range strings.Split(m.Description, "\n") {
		if strings.TrimSpace(l) == "" {
			b.WriteString(" .\n")
		} else {
			fmt.Fprintf(&b, " %s\n", l)
		}
	}
	return b.String()
}

// DebTreeOptions say what goes into the package tree.
type DebTreeOptions struct {
	Binary string // the skiff executable to ship as /usr/bin/skiff
	GOARCH string // its architecture
	Dir    string // an empty or missing directory to build the tree in
}

// WriteDebTree lays out the package tree (files plus DEBIAN/) for dpkg-deb --build.
func WriteDebTree(o DebTreeOptions) error {
	arch, err := DebArch(o.GOARCH)
	if err != nil {
		return err
	}
	m := PackageMeta()
	files := map[string]struct {
		mode os.FileMode
		data []byte
	}{
		"usr/share/doc/skiff/copyright": {0o644, []byte(fmt.Sprintf("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: %s\nSource: %s\n\nFiles: *\nCopyright: %s\nLicense: %s\n", m.Name, m.Homepage, m.Maintainer, m.License))},
		"DEBIAN/postinst":               {0o755, []byte(debPostinst)},
		"DEBIAN/prerm":                  {0o755, []byte(debPrerm)},
		"DEBIAN/postrm":                 {0o755, []byte(debPostrm)},
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return fmt.Errorf("read binary: %w", err)
	}
	files["usr/bin/skiff"] = struct {
		mode os.FileMode
		data []byte
	}{0o755, bin}
	var size int64
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := files[n]
		p := filepath.Join(o.Dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return fmt.Errorf("write %s: %w", n, err)
		}
		// WriteFile keeps the mode of an existing file and applies the umask.
		if err := os.Chmod(p, f.mode); err != nil {
			return err
		}
		if !strings.HasPrefix(n, "DEBIAN/") {
			size += int64(len(f.data))
		}
	}
	control := DebControl(m, arch, (size+1023)/1024)
	return os.WriteFile(filepath.Join(o.Dir, "DEBIAN", "control"), []byte(control), 0o644)
}

// Asset is one downloadable release archive for the Homebrew formula.
type Asset struct {
	URL    string
	SHA256 string
}

// FormulaOptions hold the release archives, keyed "darwin/arm64", "darwin/amd64",
// "linux/arm64", "linux/amd64". Each archive holds the skiff binary at its top.
type FormulaOptions struct {
	Assets map[string]Asset
	// MacOSQEMU: the macOS binaries run machines under QEMU (built without cgo, they
	// have no vz), so the formula depends on qemu on macOS too.
	MacOSQEMU bool
}

// rubyString quotes s as a Ruby double-quoted literal with interpolation disabled.
func rubyString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `#`, `\#`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// HomebrewFormula renders the formula for the current Version.
func HomebrewFormula(o FormulaOptions) (string, error) {
	m := PackageMeta()
	var b strings.Builder
	b.WriteString("# Generated from installer/version.go by installer.HomebrewFormula; do not edit.\n")
	b.WriteString("class Skiff < Formula\n")
	fmt.Fprintf(&b, "  desc %s\n  homepage %s\n  version %s\n  license %s\n", rubyString(m.Summary), rubyString(m.Homepage), rubyString(m.Version), rubyString(m.License))
	for _, goos := range []string{"darwin", "linux"} {
		block := map[string]string{"darwin": "on_macos", "linux": "on_linux"}[goos]
		wrote := false
		for _, arch := range []string{"arm64", "amd64"} {
			a, ok := o.Assets[goos+"/"+arch]
			if !ok {
				continue
			}
			if a.URL == "" || len(a.SHA256) != 64 {
				return "", fmt.Errorf("asset %s/%s needs a URL and a sha256", goos, arch)
			}
			if !wrote {
				fmt.Fprintf(&b, "\n  %s do\n", block)
				wrote = true
			}
			fmt.Fprintf(&b, "    %s do\n      url %s\n      sha256 %s\n    end\n",
				map[string]string{"arm64": "on_arm", "amd64": "on_intel"}[arch], rubyString(a.URL), rubyString(a.SHA256))
		}
		if wrote {
			b.WriteString("  end\n")
		}
	}
	if len(o.Assets) == 0 {
		return "", fmt.Errorf("the formula needs at least one release asset")
	}
	if o.MacOSQEMU {
		b.WriteString("\n  depends_on \"qemu\"\n")
	} else {
		b.WriteString("\n  on_linux do\n    depends_on \"qemu\"\n  end\n")
	}
	b.WriteString(`
  def install
    bin.install "skiff"
    generate_completions_from_executable(bin/"skiff", "completion")
  end

  def caveats
    <<~EOS
      Skiff does not start anything at login unless you ask it to:
        skiff machine set --autostart NAME
      Tools that ignore docker contexts can be pointed at Skiff with:
        skiff system socket link
    EOS
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/skiff version")
  end
end
`)
	return b.String(), nil
}

// WixOptions configure the Windows installer source.
type WixOptions struct {
	// BinarySource is the path of skiff.exe as the WiX compiler sees it.
	BinarySource string
	// ProductCode is the MSI's ProductCode; empty lets the compiler make a random one
	// ("*"). A release gives ReleaseProductCode, so that a rebuild is the same bytes.
	ProductCode string
	// Wixl leaves out what msitools' wixl (0.101) cannot compile: the Environment
	// element. The PATH entry then goes in as WixlEnvironmentTable, imported with msibuild.
	Wixl bool
}

// ReleaseProductCode is the ProductCode of Version's MSI: one per version, as MSI wants
// (a major upgrade needs a new one), and the same in every build of that version.
func ReleaseProductCode() string { return stableGUID("skiff-msi-product:" + Version) }

// WixlEnvironmentTable is the MSI Environment table (IDT, for msibuild -i) with the PATH
// entry the Environment element of WixSource makes: "=-*" set at install, removed at
// uninstall, system-wide; [~]; appends to what PATH already holds.
const WixlEnvironmentTable = "Environment\tName\tValue\tComponent_\ns72\tl255\tL255\ts72\nEnvironment\tEnvironment\nSkiffPathEntry\t=-*PATH\t[~];[INSTALLDIR]\tSkiffPath\n"

// stableGUID derives a component GUID from a fixed name. MSI component rules want the
// same GUID for the same resource in every version, which a constant name gives.
func stableGUID(name string) string {
	h := sha1.Sum([]byte("skiff-msi-component:" + name))
	h[6] = h[6]&0x0f | 0x50 // version 5
	h[8] = h[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%X-%X-%X-%X-%X", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// WixNamespace is the WiX v3 schema, which both the WiX toolset and msitools' wixl build
// (wixl with WixOptions.Wixl).
const WixNamespace = "http://schemas.microsoft.com/wix/2006/wi"

// WixSource renders the .wxs (build it with -arch x64: candle -arch x64, or wixl -a x64) of a per-machine MSI that installs skiff.exe into
// Program Files\Skiff and appends that directory to the system PATH. Everything it adds
// is an MSI resource, so uninstalling removes exactly that and nothing else.
func WixSource(o WixOptions) (string, error) {
	if o.BinarySource == "" {
		return "", fmt.Errorf("the WiX source needs the path of skiff.exe")
	}
	m := PackageMeta()
	esc := func(s string) string {
		var buf bytes.Buffer
		_ = xml.EscapeText(&buf, []byte(s))
		return strings.ReplaceAll(buf.String(), `"`, "&quot;")
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	manufacturer := m.Maintainer
	if i := strings.Index(manufacturer, " <"); i > 0 {
		manufacturer = manufacturer[:i]
	}
	w("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- Generated from installer/version.go by installer.WixSource; do not edit. -->\n")
	w("<Wix xmlns=\"%s\">\n", WixNamespace)
	product := "*"
	if o.ProductCode != "" {
		product = o.ProductCode
	}
	w("  <Product Id=\"%s\" Name=\"Skiff\" Language=\"1033\" Version=\"%s\" Manufacturer=\"%s\" UpgradeCode=\"%s\">\n", esc(product), esc(numericVersion(m.Version)), esc(manufacturer), esc(m.UpgradeCode))
	w("    <Package InstallerVersion=\"500\" Compressed=\"yes\" InstallScope=\"perMachine\" Description=\"%s\" Comments=\"%s\" />\n", esc(m.Summary), esc(m.Homepage))
	// A new version replaces the old one in place rather than installing beside it.
	w("    <MajorUpgrade DowngradeErrorMessage=\"A newer version of Skiff is already installed.\" />\n")
	w("    <Media Id=\"1\" Cabinet=\"skiff.cab\" EmbedCab=\"yes\" />\n")
	w("    <Directory Id=\"TARGETDIR\" Name=\"SourceDir\">\n      <Directory Id=\"ProgramFiles64Folder\">\n        <Directory Id=\"INSTALLDIR\" Name=\"Skiff\">\n")
	w("          <Component Id=\"SkiffExe\" Guid=\"%s\" Win64=\"yes\">\n", stableGUID("SkiffExe"))
	w("            <File Id=\"SkiffExe\" Name=\"skiff.exe\" Source=\"%s\" KeyPath=\"yes\" />\n", esc(o.BinarySource))
	w("          </Component>\n")
	w("          <Component Id=\"SkiffPath\" Guid=\"%s\" Win64=\"yes\">\n", stableGUID("SkiffPath"))
	w("            <RegistryValue Root=\"HKLM\" Key=\"Software\\Skiff\" Name=\"InstallDir\" Type=\"string\" Value=\"[INSTALLDIR]\" KeyPath=\"yes\" />\n")
	// Part="last" appends to PATH; Permanent="no" takes exactly this entry out on uninstall.
	if !o.Wixl {
		w("            <Environment Id=\"SkiffPathEntry\" Name=\"PATH\" Value=\"[INSTALLDIR]\" Permanent=\"no\" Part=\"last\" Action=\"set\" System=\"yes\" />\n")
	}
	w("          </Component>\n")
	w("        </Directory>\n      </Directory>\n    </Directory>\n")
	w("    <Feature Id=\"Main\" Title=\"Skiff\" Level=\"1\">\n      <ComponentRef Id=\"SkiffExe\" />\n      <ComponentRef Id=\"SkiffPath\" />\n    </Feature>\n")
	w("  </Product>\n</Wix>\n")
	return b.String(), nil
}
