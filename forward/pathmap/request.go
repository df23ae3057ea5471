package pathmap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Endpoints whose bodies carry host paths: Docker's, and Podman's own under /libpod
// (a SpecGenerator for containers and pods, other option names for volumes).
var (
	containerCreateRE = regexp.MustCompile(`^(/v[0-9.]+)?/containers/create$`)
	volumeCreateRE    = regexp.MustCompile(`^(/v[0-9.]+)?/volumes/create$`)
	libpodSpecRE      = regexp.MustCompile(`^(/v[0-9.]+)?/libpod/(containers|pods)/create$`)
	libpodVolumeRE    = regexp.MustCompile(`^(/v[0-9.]+)?/libpod/volumes/create$`)
)

// NeedsRewrite reports whether a request's body may carry host paths.
func NeedsRewrite(method, urlPath string) bool {
	return method == "POST" && (containerCreateRE.MatchString(urlPath) || volumeCreateRE.MatchString(urlPath) ||
		libpodSpecRE.MatchString(urlPath) || libpodVolumeRE.MatchString(urlPath))
}

// ErrBadBody says a body that must be read for host paths is not a JSON object.
var ErrBadBody = errors.New("the request body is not a JSON object")

// RewriteBody translates the host paths in a container-create or volume-create body.
// Unknown fields survive untouched (numbers stay exact) so newer API versions pass through.
//
// Field names are matched as the engine's JSON decoder matches them, whatever their case
// ("hostconfig", "binds"), and every spelling present is translated. The engine sees
// only the re-encoded document, so a body that does not decode here is refused rather
// than passed on for another decoder to read differently.
func (t *Table) RewriteBody(urlPath string, body []byte) ([]byte, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return body, nil // nothing to translate; the engine answers as it does
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBody, err)
	}
	var err error
	switch {
	case volumeCreateRE.MatchString(urlPath):
		err = t.rewriteVolume(doc, "DriverOpts")
	case libpodVolumeRE.MatchString(urlPath):
		err = t.rewriteVolume(doc, "Options")
	case libpodSpecRE.MatchString(urlPath):
		err = t.rewriteSpec(doc)
	default:
		err = t.rewriteContainer(doc)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

// each calls fn with every value of m whose key is name in any case, in key order.
func each(m map[string]any, name string, fn func(key string, v any) error) error {
	var keys []string
	for k := range m {
		if strings.EqualFold(k, name) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(k, m[k]); err != nil {
			return err
		}
	}
	return nil
}

// rewriteContainer translates the host-config fields under HostConfig and at the top
// level, where engines of old API versions read them too.
func (t *Table) rewriteContainer(doc map[string]any) error {
	if err := t.rewriteHostConfig(doc); err != nil {
		return err
	}
	return each(doc, "HostConfig", func(_ string, v any) error {
		hc, _ := v.(map[string]any)
		return t.rewriteHostConfig(hc)
	})
}

func (t *Table) rewriteHostConfig(hc map[string]any) error {
	if hc == nil {
		return nil
	}
	err := each(hc, "Binds", func(_ string, v any) error {
		binds, _ := v.([]any)
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
		return nil
	})
	if err != nil {
		return err
	}
	return each(hc, "Mounts", func(_ string, v any) error {
		mounts, _ := v.([]any)
		for _, m := range mounts {
			if mm, ok := m.(map[string]any); ok && isBind(mm) {
				if err := t.rewriteSources(mm); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// isBind reports whether any spelling of the mount's Type says "bind".
func isBind(m map[string]any) bool {
	bind := false
	each(m, "Type", func(_ string, v any) error {
		if s, ok := v.(string); ok && strings.EqualFold(s, "bind") {
			bind = true
		}
		return nil
	})
	return bind
}

// rewriteSources translates every spelling of a bind mount's Source.
func (t *Table) rewriteSources(m map[string]any) error {
	return t.rewriteField(m, "Source", func(s string) bool { return s != "" })
}

// rewriteField translates every spelling of m's field whose value is a string that
// take says to translate.
func (t *Table) rewriteField(m map[string]any, field string, take func(string) bool) error {
	return each(m, field, func(k string, v any) error {
		p, _ := v.(string)
		if !take(p) {
			return nil
		}
		n, err := t.Translate(p)
		if err != nil {
			return err
		}
		m[k] = n
		return nil
	})
}

// rewriteVolume handles local volumes that bind a host folder (-o bind or rbind,
// device=PATH), their options under key (DriverOpts for Docker, Options for Podman).
// The options are a map the driver reads by exact key.
func (t *Table) rewriteVolume(doc map[string]any, key string) error {
	return each(doc, key, func(_ string, v any) error {
		opts, _ := v.(map[string]any)
		if opts == nil {
			return nil
		}
		o, _ := opts["o"].(string)
		dev, _ := opts["device"].(string)
		o = "," + o + ","
		if dev == "" || !strings.Contains(o, ",bind,") && !strings.Contains(o, ",rbind,") {
			return nil
		}
		n, err := t.Translate(dev)
		if err != nil {
			return err
		}
		opts["device"] = n
		return nil
	})
}

// rewriteSpec translates a Podman SpecGenerator (container or pod create). Every mount
// source that is a path is translated, whatever the mount's type: a bind's (type "bind",
// or none with a bind option), a glob's, and any other that podman might read as one.
// Overlay volumes name a host folder too, and a named volume whose name is a path is
// translated rather than trusted.
func (t *Table) rewriteSpec(doc map[string]any) error {
	for _, f := range []struct{ list, field string }{
		{"mounts", "source"}, {"overlay_volumes", "source"}, {"volumes", "Name"},
	} {
		err := each(doc, f.list, func(_ string, v any) error {
			items, _ := v.([]any)
			for _, it := range items {
				m, ok := it.(map[string]any)
				if !ok {
					continue
				}
				if err := t.rewriteField(m, f.field, IsHostPath); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
