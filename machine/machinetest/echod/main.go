// Command echod is a tiny static echo server for the end-to-end test image (busybox has
// no UDP server): it echoes every UDP datagram and every TCP stream it receives.
package main

import (
	"flag"
	"io"
	"log"
	"net"

	"github.com/skiff-dev/skiff/machine/machinetest/blob"
)

func main() {
	udp := flag.String("udp", "", "UDP address to echo on, e.g. :5353")
	tcp := flag.String("tcp", "", "TCP address to echo on")
	bulk := flag.String("bulk", "", "TCP address that sends blob.Bytes(1, -size) to every connection")
	size := flag.Int("size", 10<<20, "bytes per bulk connection")
	flag.Parse()
	if *bulk != "" {
		data := blob.Bytes(1, *size)
		ln, err := net.Listen("tcp", *bulk)
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { c.Write(data); c.Close() }()
			}
		}()
	}
	if *tcp != "" {
		ln, err := net.Listen("tcp", *tcp)
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(c, c); c.Close() }()
			}
		}()
	}
	if *udp != "" {
		pc, err := net.ListenPacket("udp", *udp)
		if err != nil {
			log.Fatal(err)
		}
		buf := make([]byte, 65535)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				log.Fatal(err)
			}
			pc.WriteTo(buf[:n], addr)
		}
	}
	select {}
}
