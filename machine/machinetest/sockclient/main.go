// Command sockclient is what a container that bind-mounts the engine's socket does (the
// Testcontainers Ryuk pattern), for the end-to-end test image, which has no docker CLI: it
// lists the containers through the socket, then creates and starts one, waits for it, and
// prints "listed N" and "started ID".
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"
)

func main() {
	sock := flag.String("sock", "/var/run/docker.sock", "engine socket")
	image := flag.String("image", "", "image of the container to start")
	label := flag.String("label", "", "label key=value of the container to start")
	flag.Parse()
	c := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", *sock)
	}}}
	call := func(method, path string, body, out any) {
		var r io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, "http://docker"+path, r)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			log.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			log.Fatalf("%s %s: %s: %s", method, path, resp.Status, data)
		}
		if out != nil {
			if err := json.Unmarshal(data, out); err != nil {
				log.Fatalf("%s %s: %v: %s", method, path, err, data)
			}
		}
	}
	var list []struct{ ID string }
	call("GET", "/containers/json?all=1", nil, &list)
	fmt.Printf("listed %d\n", len(list))
	labels := map[string]string{}
	if k, v, ok := bytes.Cut([]byte(*label), []byte("=")); ok {
		labels[string(k)] = string(v)
	}
	var created struct{ ID string }
	call("POST", "/containers/create", map[string]any{"Image": *image, "Cmd": []string{"echo", "child-of-socket-ok"}, "Labels": labels}, &created)
	call("POST", "/containers/"+created.ID+"/start", nil, nil)
	var waited struct{ StatusCode int }
	call("POST", "/containers/"+created.ID+"/wait", nil, &waited)
	fmt.Printf("started %s exit %d\n", created.ID, waited.StatusCode)
}
