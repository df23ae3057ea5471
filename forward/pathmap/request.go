package pathmap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Endpoints whose bodies carry host paths.
var (
	containerCreateRE = regexp.MustCompile(`^(/v[0-9.]+)?/containers/create$`)
	volumeCreateRE    = regexp.MustCompile(`^(/v[0-9.]+)?/volumes/create$`)
)

// NeedsRewrite reports whether a request's body may carry host paths.
func NeedsRewrite(method, urlPath string) bool {
	return method == "POST" && (containerCreateRE.MatchString(urlPath) || volumeCreateRE.MatchString(urlPath))
}

// RewriteBody translates the host paths in a container-create or volume-create body.
// Unknown fields survive untouched (numbers stay exact) so newer API versions pass through.
func (t *Table) RewriteBody(urlPath string, body []byte) ([]byte, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return body, nil // not ours to judge: let the engine report bad JSON
	}
	var err error
	if volumeCreateRE.MatchString(urlPath) {
		err = t.rewriteVolume(doc)
	} else {
		err = t.rewriteContainer(doc)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

func (t *Table) rewriteContainer(doc map[string]any) error {
	hc, _ := doc["HostConfig"].(map[string]any)
	if hc == nil {
		return nil
	}
	if binds, ok := hc["Binds"].([]any); ok {
		for i, b := range binds {
			s, ok := b.(string)
			if !ok {
				continue
			}
			n, err := t.TranslateBind(s)
			if err != nil {
				return err
			}
			binds[i] = n
		}
	}
	if mounts, ok := hc["Mounts"].([]any); ok {
		for _, m := range mounts {
			mm, ok := m.(map[string]any)
			if !ok || !strings.EqualFold(fmt.Sprint(mm["Type"]), "bind") {
				continue
			}
			src, _ := mm["Source"].(string)
			if src == "" {
				continue
			}
			n, err := t.Translate(src)
			if err != nil {
				return err
			}
			mm["Source"] = n
		}
	}
	return nil
}

// rewriteVolume handles local volumes that bind a host folder (-o bind, device=PATH).
func (t *Table) rewriteVolume(doc map[string]any) error {
	opts, _ := doc["DriverOpts"].(map[string]any)
	if opts == nil {
		return nil
	}
	o, _ := opts["o"].(string)
	dev, _ := opts["device"].(string)
	if dev == "" || !strings.Contains(","+o+",", ",bind,") {
		return nil
	}
	n, err := t.Translate(dev)
	if err != nil {
		return err
	}
	opts["device"] = n
	return nil
}
