// Command skiffpkg generates Skiff's packages and host files from installer's one
// version source, and mounts the CLI's host commands for the shell-level tests in
// .ci/installer-test.sh. Release scripts run it; it is not shipped.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/cmd/internal/hostcmd"
	"github.com/skiff-dev/skiff/installer"
)

func main() {
	root := &cobra.Command{Use: "skiffpkg", Short: "Generate Skiff packages and host integration files", SilenceUsage: true}
	// --skiff-binary lets tests run login hooks against a stand-in skiff.
	var skiffBinary string
	root.PersistentFlags().StringVar(&skiffBinary, "skiff-binary", "", "skiff executable the autostart hooks run (default: skiff on PATH)")
	o := hostcmd.Options{Executable: func() (string, error) {
		if skiffBinary != "" {
			return skiffBinary, nil
		}
		return installer.StableExecutable()
	}}
	root.AddCommand(versionCmd(), genCmd(), debTreeCmd())
	root.AddCommand(hostcmd.NewDoctor(o), hostcmd.NewAutostart(o), hostcmd.NewSocket(o))
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version every package is generated with",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), installer.Version) },
	}
}

func genCmd() *cobra.Command {
	var binary, machine, exe string
	var assets []string
	cmd := &cobra.Command{
		Use:   "gen DIR",
		Short: "Write the autostart files, Homebrew formula and WiX source into DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			write := func(name string, data []byte) error {
				return os.WriteFile(filepath.Join(dir, name), data, 0o644)
			}
			for _, goos := range []string{"linux", "darwin", "windows"} {
				a := installer.Autostart{Binary: binary, Machine: machine}
				if goos == "windows" {
					a.Binary, a.User = `C:\Program Files\Skiff\skiff.exe`, `EXAMPLE\user`
				}
				files, err := a.Files(goos)
				if err != nil {
					return err
				}
				for _, f := range files {
					if err := write(filepath.Base(f.Path), f.Content); err != nil {
						return err
					}
				}
			}
			fo := installer.FormulaOptions{Assets: map[string]installer.Asset{}}
			for _, s := range assets {
				// PLATFORM=URL@SHA256
				plat, rest, ok1 := strings.Cut(s, "=")
				url, sum, ok2 := strings.Cut(rest, "@")
				if !ok1 || !ok2 {
					return fmt.Errorf("--asset %q: want os/arch=URL@SHA256", s)
				}
				fo.Assets[plat] = installer.Asset{URL: url, SHA256: sum}
			}
			rb, err := installer.HomebrewFormula(fo)
			if err != nil {
				return err
			}
			if err := write("skiff.rb", []byte(rb)); err != nil {
				return err
			}
			wxs, err := installer.WixSource(installer.WixOptions{BinarySource: exe})
			if err != nil {
				return err
			}
			return write("skiff.wxs", []byte(wxs))
		},
	}
	cmd.Flags().StringVar(&binary, "binary", "/usr/bin/skiff", "skiff path the autostart files run")
	cmd.Flags().StringVar(&machine, "machine", "default", "machine the autostart files start")
	cmd.Flags().StringVar(&exe, "exe", "skiff.exe", "skiff.exe path for the WiX source")
	cmd.Flags().StringArrayVar(&assets, "asset", nil, "release archive for the formula: os/arch=URL@SHA256 (repeatable)")
	return cmd
}

func debTreeCmd() *cobra.Command {
	var binary, goarch string
	cmd := &cobra.Command{
		Use:   "deb-tree DIR",
		Short: "Lay out the Debian package tree for dpkg-deb --build",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return installer.WriteDebTree(installer.DebTreeOptions{Binary: binary, GOARCH: goarch, Dir: args[0]})
		},
	}
	cmd.Flags().StringVar(&binary, "binary", "", "skiff executable to package")
	cmd.Flags().StringVar(&goarch, "goarch", runtime.GOARCH, "architecture of the executable")
	_ = cmd.MarkFlagRequired("binary")
	return cmd
}
