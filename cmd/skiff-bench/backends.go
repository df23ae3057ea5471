package main

import (
	"flag"
	"fmt"
	"strings"
)

// benchBackends times boots to engine-ready of one image on several Linux backends side
// by side: the direct kernel (qemu) against what other platforms boot, stood in for on
// QEMU (qemu-wsl: WSL's root filesystem under the stand-in's init; qemu-hyperv: the EFI
// boot disk under OVMF). qemu-wsl needs its init (SKIFF_WSL_INIT, or skiff-wslinit
// next to the skiff CLI).
func benchBackends(args []string) error {
	fs := flag.NewFlagSet("backends", flag.ExitOnError)
	image := fs.String("image", "images/out/amd64", "image directory")
	backends := fs.String("backends", "qemu,qemu-wsl", "comma-separated backends; the first is the baseline")
	bf := newBootFlags(fs)
	fs.Parse(args)
	var variants []bootVariant
	for _, be := range strings.Split(*backends, ",") {
		variants = append(variants, bootVariant{name: be, image: *image, initArgs: []string{"--backend", be}})
	}
	results, err := bf.boots(variants)
	if err != nil {
		return err
	}
	base := median(results[variants[0].name])
	fmt.Printf("\nQEMU launch -> engine GET /_ping OK, median of %d:\n", *bf.runs)
	for _, v := range variants {
		m := median(results[v.name])
		fmt.Printf("  %-12s %6.2fs  (%.2f x %s)\n", v.name, m.Seconds(), m.Seconds()/base.Seconds(), variants[0].name)
	}
	return nil
}
