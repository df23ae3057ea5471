package qemu

import (
	"os"
	"testing"
)

// BenchmarkLoadRAM loads the saved guest memory named by SKIFF_BENCH_RAM (a suspended
// machine's suspended/ram) into a fresh memfd, as a warm start does.
func BenchmarkLoadRAM(b *testing.B) {
	path := os.Getenv("SKIFF_BENCH_RAM")
	if path == "" {
		b.Skip("SKIFF_BENCH_RAM names no saved guest memory")
	}
	src, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		ram, err := newRAM(st.Size() >> 20)
		if err != nil {
			b.Fatal(err)
		}
		if err := loadRAM(ram, src, st.Size()); err != nil {
			b.Fatal(err)
		}
		ram.Close()
	}
}
