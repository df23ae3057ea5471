package installer

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func withVersion(t *testing.T, v string) {
	old := Version
	Version = v
	t.Cleanup(func() { Version = old })
}

var sha0 = strings.Repeat("ab", 32)

func formula(t *testing.T) string {
	t.Helper()
	rb, err := HomebrewFormula(FormulaOptions{Assets: map[string]Asset{
		"darwin/arm64": {URL: "https://example.com/skiff-darwin-arm64.tar.gz", SHA256: sha0},
		"darwin/amd64": {URL: "https://example.com/skiff-darwin-amd64.tar.gz", SHA256: sha0},
		"linux/amd64":  {URL: "https://example.com/skiff-linux-amd64.tar.gz#\"x", SHA256: sha0},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return rb
}

// TestOneVersionSource changes Version and expects every generated package to follow.
func TestOneVersionSource(t *testing.T) {
	withVersion(t, "9.8.7-rc1")
	if c := DebControl(PackageMeta(), "amd64", 1); !strings.Contains(c, "\nVersion: 9.8.7~rc1\n") {
		t.Errorf("control:\n%s", c)
	}
	if rb := formula(t); !strings.Contains(rb, `version "9.8.7-rc1"`) {
		t.Errorf("formula:\n%s", rb)
	}
	wxs, err := WixSource(WixOptions{BinarySource: "skiff.exe"})
	if err != nil || !strings.Contains(wxs, `Version="9.8.7"`) {
		t.Errorf("wxs (%v):\n%s", err, wxs)
	}
}

func TestDebControl(t *testing.T) {
	c := DebControl(PackageMeta(), "arm64", 1234)
	for _, want := range []string{"Package: skiff\n", "Architecture: arm64\n", "Installed-Size: 1234\n", "Maintainer: ", "Description: Run containers in a small Linux VM\n Skiff boots"} {
		if !strings.Contains(c, want) {
			t.Errorf("control lacks %q:\n%s", want, c)
		}
	}
	// Every line is a field or a continuation; a blank line would end the stanza.
	for _, l := range strings.Split(strings.TrimSuffix(c, "\n"), "\n") {
		if l == "" || !(strings.HasPrefix(l, " ") || regexp.MustCompile(`^[A-Za-z-]+: `).MatchString(l)) {
			t.Errorf("bad control line %q", l)
		}
	}
	if _, err := DebArch("mips"); err == nil {
		t.Error("unknown GOARCH accepted")
	}
}

func TestWriteDebTree(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "skiff-bin")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o600)
	tree := filepath.Join(dir, "tree")
	if err := WriteDebTree(DebTreeOptions{Binary: bin, GOARCH: "amd64", Dir: tree}); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{
		"usr/bin/skiff": 0o755, "DEBIAN/postinst": 0o755, "DEBIAN/prerm": 0o755, "DEBIAN/postrm": 0o755,
		"DEBIAN/control": 0o644, "usr/share/doc/skiff/copyright": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(tree, path))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want %v", path, fi, err, mode)
		}
	}
	// The maintainer scripts must remove every file postinst makes.
	made := regexp.MustCompile(`complete (\S+) (\S+) `).FindAllStringSubmatch(debPostinst, -1)
	if len(made) != 3 {
		t.Fatalf("postinst completions: %v", made)
	}
	for _, m := range made {
		f := m[1] + "/" + m[2]
		if !strings.Contains(debPrerm, f) || !strings.Contains(debPostrm, f) {
			t.Errorf("%s is made by postinst but not removed by prerm and postrm", f)
		}
	}
}

func TestHomebrewFormula(t *testing.T) {
	rb := formula(t)
	for _, want := range []string{"class Skiff < Formula", "on_macos do", "on_arm do", "on_intel do", `bin.install "skiff"`, `shell_output("#{bin}/skiff version")`} {
		if !strings.Contains(rb, want) {
			t.Errorf("formula lacks %q", want)
		}
	}
	// An asset URL must not be able to inject Ruby interpolation.
	if !strings.Contains(rb, `url "https://example.com/skiff-linux-amd64.tar.gz\#\"x"`) {
		t.Errorf("URL not escaped:\n%s", rb)
	}
	if _, err := HomebrewFormula(FormulaOptions{Assets: map[string]Asset{"darwin/arm64": {URL: "u", SHA256: "short"}}}); err == nil {
		t.Error("a bad sha256 was accepted")
	}
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		t.Skip("ruby not installed (.ci/installer-test.sh installs it)")
	}
	p := filepath.Join(t.TempDir(), "skiff.rb")
	os.WriteFile(p, []byte(rb), 0o644)
	if out, err := exec.Command(ruby, "-c", p).CombinedOutput(); err != nil {
		t.Fatalf("ruby -c: %v\n%s", err, out)
	}
	os.WriteFile(p, []byte(strings.Replace(rb, "  end\n", "", 1)), 0o644)
	if err := exec.Command(ruby, "-c", p).Run(); err == nil {
		t.Fatal("ruby -c accepted a formula with a missing end")
	}
}

type wxsDoc struct {
	XMLName xml.Name `xml:"Wix"`
	Product struct {
		ID           string `xml:"Id,attr"`
		Name         string `xml:"Name,attr"`
		Version      string `xml:"Version,attr"`
		UpgradeCode  string `xml:"UpgradeCode,attr"`
		Manufacturer string `xml:"Manufacturer,attr"`
		Package      struct {
			InstallScope string `xml:"InstallScope,attr"`
			Compressed   string `xml:"Compressed,attr"`
		} `xml:"Package"`
		MajorUpgrade *struct {
			Downgrade string `xml:"DowngradeErrorMessage,attr"`
		} `xml:"MajorUpgrade"`
		Media struct {
			EmbedCab string `xml:"EmbedCab,attr"`
		} `xml:"Media"`
		Target struct {
			ID string `xml:"Id,attr"`
			PF struct {
				ID      string `xml:"Id,attr"`
				Install struct {
					ID         string `xml:"Id,attr"`
					Name       string `xml:"Name,attr"`
					Components []struct {
						ID    string `xml:"Id,attr"`
						GUID  string `xml:"Guid,attr"`
						Files []struct {
							Name   string `xml:"Name,attr"`
							Source string `xml:"Source,attr"`
						} `xml:"File"`
						Env []struct {
							Name, Value, Permanent, Part, Action, System string `xml:",attr"`
						} `xml:"Environment"`
						Reg []struct {
							KeyPath string `xml:"KeyPath,attr"`
						} `xml:"RegistryValue"`
					} `xml:"Component"`
				} `xml:"Directory"`
			} `xml:"Directory"`
		} `xml:"Directory"`
		Features []struct {
			Refs []struct {
				ID string `xml:"Id,attr"`
			} `xml:"ComponentRef"`
		} `xml:"Feature"`
	} `xml:"Product"`
}

func TestWixSource(t *testing.T) {
	src, err := WixSource(WixOptions{BinarySource: `build\skiff & co.exe`})
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(strings.NewReader(src))
	d.Strict = true
	var doc wxsDoc
	if err := d.Decode(&doc); err != nil {
		t.Fatalf("not well-formed: %v\n%s", err, src)
	}
	p := doc.Product
	if doc.XMLName.Space != WixNamespace || p.ID != "*" || p.Name != "Skiff" || p.Version != numericVersion(Version) || p.UpgradeCode != PackageMeta().UpgradeCode {
		t.Errorf("Product = %+v (ns %q)", p, doc.XMLName.Space)
	}
	if p.Package.InstallScope != "perMachine" || p.MajorUpgrade == nil || p.Media.EmbedCab != "yes" {
		t.Errorf("Package/MajorUpgrade/Media = %+v %+v %+v", p.Package, p.MajorUpgrade, p.Media)
	}
	inst := p.Target.PF.Install
	if p.Target.ID != "TARGETDIR" || p.Target.PF.ID != "ProgramFiles64Folder" || inst.ID != "INSTALLDIR" || inst.Name != "Skiff" {
		t.Errorf("directories = %+v", p.Target)
	}
	guid := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)
	ids := map[string]bool{}
	var files, envs int
	for _, c := range inst.Components {
		ids[c.ID] = true
		if !guid.MatchString(c.GUID) {
			t.Errorf("component %s GUID %q", c.ID, c.GUID)
		}
		for _, f := range c.Files {
			files++
			if f.Name != "skiff.exe" || f.Source != `build\skiff & co.exe` {
				t.Errorf("File = %+v", f)
			}
		}
		for _, e := range c.Env {
			envs++
			if e.Name != "PATH" || e.Value != "[INSTALLDIR]" || e.Part != "last" || e.Permanent != "no" || e.System != "yes" || e.Action != "set" {
				t.Errorf("Environment = %+v", e)
			}
			if len(c.Reg) != 1 || c.Reg[0].KeyPath != "yes" {
				t.Errorf("PATH component needs a registry key path: %+v", c.Reg)
			}
		}
	}
	if files != 1 || envs != 1 {
		t.Errorf("%d files, %d PATH entries", files, envs)
	}
	if len(p.Features) != 1 || len(p.Features[0].Refs) != len(ids) {
		t.Errorf("features = %+v", p.Features)
	}
	for _, r := range p.Features[0].Refs {
		if !ids[r.ID] {
			t.Errorf("feature references unknown component %q", r.ID)
		}
	}
	// Component GUIDs are stable across versions (MSI component rules).
	withVersion(t, "2.0.0")
	src2, _ := WixSource(WixOptions{BinarySource: `build\skiff & co.exe`})
	for _, c := range inst.Components {
		if !strings.Contains(src2, c.GUID) {
			t.Errorf("component %s GUID changed with the version", c.ID)
		}
	}
}

func TestFormulaMacOSQEMU(t *testing.T) {
	rb, err := HomebrewFormula(FormulaOptions{MacOSQEMU: true, Assets: map[string]Asset{"darwin/arm64": {URL: "u", SHA256: sha0}}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rb, "on_linux do\n    depends_on") || !strings.Contains(rb, "\n  depends_on \"qemu\"\n") {
		t.Errorf("a formula for macOS binaries without vz must depend on qemu everywhere:\n%s", rb)
	}
	if !strings.Contains(formula(t), "  on_linux do\n    depends_on \"qemu\"\n  end\n") {
		t.Error("the default formula lost its Linux-only qemu dependency")
	}
}

// TestWixlBuildsMSI compiles the wixl variant of the source with msitools, adds the PATH
// entry as a table, and reads both back from the MSI.
func TestWixlBuildsMSI(t *testing.T) {
	for _, tool := range []string{"wixl", "msibuild", "msiinfo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install msitools; the release build installs it)", tool)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "skiff.exe"), []byte("MZ not really"), 0o644)
	src, err := WixSource(WixOptions{BinarySource: "skiff.exe", ProductCode: ReleaseProductCode(), Wixl: true})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(src, "<Environment") || !strings.Contains(src, `Product Id="`+ReleaseProductCode()+`"`) {
		t.Fatalf("wixl source:\n%s", src)
	}
	os.WriteFile(filepath.Join(dir, "skiff.wxs"), []byte(src), 0o644)
	os.WriteFile(filepath.Join(dir, "Environment.idt"), []byte(WixlEnvironmentTable), 0o644)
	run := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run("wixl", "-a", "x64", "-o", "skiff.msi", "skiff.wxs")
	run("msibuild", "skiff.msi", "-i", "Environment.idt")
	if out := run("msiinfo", "export", "skiff.msi", "File"); !strings.Contains(out, "skiff.exe") {
		t.Errorf("File table:\n%s", out)
	}
	if out := run("msiinfo", "export", "skiff.msi", "Environment"); !strings.Contains(out, "SkiffPathEntry\t=-*PATH\t[~];[INSTALLDIR]\tSkiffPath") {
		t.Errorf("Environment table:\n%s", out)
	}
	if out := run("msiinfo", "export", "skiff.msi", "Property"); !strings.Contains(out, "ProductCode\t{"+ReleaseProductCode()+"}") {
		t.Errorf("Property table has not the release's ProductCode:\n%s", out)
	}
}
