package fake

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/system"
	"github.com/skiff-dev/skiff/gui/engine"
)

// Engine is a fake Docker Engine API with containers and images held in memory.
type Engine struct {
	Recorder
	Socket  string
	Version system.VersionResponse
	srv     *httptest.Server

	mu         sync.Mutex
	containers []engine.Container
	images     []engine.Image
	logs       map[string][]engine.LogLine
	logSubs    map[string]map[chan engine.LogLine]bool
	subs       map[chan engine.Event]bool
	// Fail makes the named "METHOD /path" answer 500 with this message.
	fail map[string]string
}

// NewEngine serves a fake engine on dir/name.
func NewEngine(dir, name string) (*Engine, error) {
	e := &Engine{Version: system.VersionResponse{Version: "28.5.2", APIVersion: "1.51", Os: "linux", Arch: "amd64"},
		logs: map[string][]engine.LogLine{}, logSubs: map[string]map[chan engine.LogLine]bool{},
		subs: map[chan engine.Event]bool{}, fail: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_ping", e.handlePing)
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, e.Version) })
	mux.HandleFunc("GET /containers/{id}/json", e.handleInspect)
	mux.HandleFunc("GET /containers/json", e.handleContainers)
	mux.HandleFunc("GET /images/json", e.handleImages)
	mux.HandleFunc("POST /containers/create", e.handleCreate)
	mux.HandleFunc("POST /containers/{id}/{action}", e.handleAction)
	mux.HandleFunc("DELETE /containers/{id}", e.handleRemove)
	mux.HandleFunc("DELETE /images/{id}", e.handleRemoveImage)
	mux.HandleFunc("GET /containers/{id}/logs", e.handleLogs)
	mux.HandleFunc("GET /events", e.handleEvents)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path, r.URL.RawPath = unversioned(r.URL.Path), ""
		e.record(r)
		e.mu.Lock()
		msg, bad := e.fail[r.Method+" "+r.URL.Path]
		e.mu.Unlock()
		if bad {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			json.NewEncoder(w).Encode(map[string]string{"message": msg})
			return
		}
		mux.ServeHTTP(w, r)
	})
	srv, p, err := serveUnix(dir, name, h)
	if err != nil {
		return nil, err
	}
	e.srv, e.Socket = srv, p
	return e, nil
}

// Close stops serving.
func (e *Engine) Close() {
	e.srv.CloseClientConnections()
	e.srv.Close()
}

// FailOn makes requests "METHOD /path" fail with msg.
func (e *Engine) FailOn(req, msg string) {
	e.mu.Lock()
	e.fail[req] = msg
	e.mu.Unlock()
}

// AddContainer adds (or replaces) a container and announces it like the engine would.
func (e *Engine) AddContainer(c engine.Container) {
	e.mu.Lock()
	replaced := false
	for i := range e.containers {
		if e.containers[i].ID == c.ID {
			e.containers[i], replaced = c, true
		}
	}
	if !replaced {
		e.containers = append(e.containers, c)
	}
	e.mu.Unlock()
	e.Emit("container", "create", c.ID)
	if c.State == "running" {
		e.Emit("container", "start", c.ID)
	}
}

// AddImage adds an image.
func (e *Engine) AddImage(i engine.Image) {
	e.mu.Lock()
	e.images = append(e.images, i)
	e.mu.Unlock()
}

// Container returns a container by id.
func (e *Engine) Container(id string) (engine.Container, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.containers {
		if c.ID == id {
			return c, true
		}
	}
	return engine.Container{}, false
}

// Log appends a line to a container's output and sends it to followers.
func (e *Engine) Log(id, stream, text string) {
	l := engine.LogLine{Stream: stream, Text: text}
	e.mu.Lock()
	e.logs[id] = append(e.logs[id], l)
	for ch := range e.logSubs[id] {
		select {
		case ch <- l:
		default:
		}
	}
	e.mu.Unlock()
}

// Emit sends an event to the subscribers.
func (e *Engine) Emit(typ, action, id string) {
	ev := engine.Event{Type: events.Type(typ), Action: events.Action(action), Actor: events.Actor{ID: id}, Time: time.Now().Unix()}
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// unversioned strips the API version a path may start with (/v1.51/containers/json):
// the engine serves every route both ways, and a client that negotiates uses the first.
func unversioned(path string) string {
	rest, ok := strings.CutPrefix(path, "/v")
	if !ok {
		return path
	}
	v, tail, ok := strings.Cut(rest, "/")
	if _, err := strconv.ParseFloat(v, 64); !ok || err != nil {
		return path
	}
	return "/" + tail
}

// handlePing answers the version negotiation of clients (HEAD or GET /_ping).
func (e *Engine) handlePing(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Api-Version", e.Version.APIVersion)
	w.Header().Set("Ostype", e.Version.Os)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("OK"))
}

// handleInspect answers the part of a container's inspect the fake knows: no TTY, so
// its logs are multiplexed.
func (e *Engine) handleInspect(w http.ResponseWriter, r *http.Request) {
	c, ok := e.Container(r.PathValue("id"))
	if !ok {
		e.notFound(w, "container", r.PathValue("id"))
		return
	}
	writeJSON(w, map[string]any{"Id": c.ID, "Name": "/" + c.Name(), "Image": c.Image,
		"State":  map[string]any{"Status": c.State, "Running": c.State == "running"},
		"Config": map[string]any{"Image": c.Image, "Tty": false}})
}

func (e *Engine) handleContainers(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	cs := append([]engine.Container{}, e.containers...)
	e.mu.Unlock()
	if r.URL.Query().Get("all") != "1" {
		var run []engine.Container
		for _, c := range cs {
			if c.State == "running" {
				run = append(run, c)
			}
		}
		cs = run
	}
	writeJSON(w, cs)
}

func (e *Engine) handleImages(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	is := append([]engine.Image{}, e.images...)
	e.mu.Unlock()
	writeJSON(w, is)
}

func (e *Engine) notFound(w http.ResponseWriter, what, id string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	json.NewEncoder(w).Encode(map[string]string{"message": "No such " + what + ": " + id})
}

func (e *Engine) handleAction(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("id"), r.PathValue("action")
	e.mu.Lock()
	var c *engine.Container
	for i := range e.containers {
		if e.containers[i].ID == id {
			c = &e.containers[i]
		}
	}
	if c == nil {
		e.mu.Unlock()
		e.notFound(w, "container", id)
		return
	}
	var events []string
	switch action {
	case "start":
		c.State, c.Status = "running", "Up Less than a second"
		events = []string{"start"}
	case "stop":
		c.State, c.Status = "exited", "Exited (0) Less than a second ago"
		events = []string{"kill", "die", "stop"}
	case "restart":
		c.State, c.Status = "running", "Up Less than a second"
		events = []string{"die", "start", "restart"}
	default:
		e.mu.Unlock()
		http.Error(w, "unknown action "+action, http.StatusNotFound)
		return
	}
	e.mu.Unlock()
	for _, ev := range events {
		e.Emit("container", ev, id)
	}
	w.WriteHeader(http.StatusNoContent)
}

// createRequest is the part of POST /containers/create the fake understands.
type createRequest struct {
	Image      string   `json:"Image"`
	Cmd        []string `json:"Cmd"`
	HostConfig struct {
		PortBindings map[string][]struct {
			HostIP   string `json:"HostIp"`
			HostPort string `json:"HostPort"`
		} `json:"PortBindings"`
	} `json:"HostConfig"`
}

func (e *Engine) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	id := fmt.Sprintf("f%011d", len(e.containers)+1)
	e.mu.Unlock()
	c := engine.Container{ID: id, Names: []string{"/" + r.URL.Query().Get("name")}, Image: req.Image,
		State: "created", Status: "Created", Created: time.Now().Unix()}
	for spec, binds := range req.HostConfig.PortBindings {
		var priv int
		proto := "tcp"
		fmt.Sscanf(strings.Replace(spec, "/", " ", 1), "%d %s", &priv, &proto)
		for _, b := range binds {
			pub, _ := strconv.Atoi(b.HostPort)
			c.Ports = append(c.Ports, engine.Port{IP: "0.0.0.0", PrivatePort: priv, PublicPort: pub, Type: proto})
		}
	}
	e.AddContainer(c)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{"Id": id, "Warnings": []string{}})
}

func (e *Engine) handleRemove(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e.mu.Lock()
	found := false
	for i, c := range e.containers {
		if c.ID == id {
			e.containers = append(e.containers[:i:i], e.containers[i+1:]...)
			found = true
			break
		}
	}
	e.mu.Unlock()
	if !found {
		e.notFound(w, "container", id)
		return
	}
	e.Emit("container", "destroy", id)
	w.WriteHeader(http.StatusNoContent)
}

func (e *Engine) handleRemoveImage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e.mu.Lock()
	found := false
	for i, im := range e.images {
		if im.ID == id {
			e.images = append(e.images[:i:i], e.images[i+1:]...)
			found = true
			break
		}
	}
	e.mu.Unlock()
	if !found {
		e.notFound(w, "image", id)
		return
	}
	e.Emit("image", "delete", id)
	writeJSON(w, []map[string]string{{"Deleted": id}})
}

// handleLogs answers in the engine's multiplexed framing and keeps following.
func (e *Engine) handleLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	tail, _ := strconv.Atoi(r.URL.Query().Get("tail"))
	ch := make(chan engine.LogLine, 64)
	e.mu.Lock()
	past := append([]engine.LogLine(nil), e.logs[id]...)
	if e.logSubs[id] == nil {
		e.logSubs[id] = map[chan engine.LogLine]bool{}
	}
	e.logSubs[id][ch] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.logSubs[id], ch)
		e.mu.Unlock()
	}()
	if tail > 0 && len(past) > tail {
		past = past[len(past)-tail:]
	}
	w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	write := func(l engine.LogLine) error {
		var hdr [8]byte
		hdr[0] = 1
		if l.Stream == "stderr" {
			hdr[0] = 2
		}
		b := []byte(l.Text + "\n")
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(b)))
		if _, err := w.Write(append(hdr[:], b...)); err != nil {
			return err
		}
		fl.Flush()
		return nil
	}
	for _, l := range past {
		if write(l) != nil {
			return
		}
	}
	fl.Flush()
	if r.URL.Query().Get("follow") != "1" {
		return
	}
	for {
		select {
		case l := <-ch:
			if write(l) != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

func (e *Engine) handleEvents(w http.ResponseWriter, r *http.Request) {
	ch := make(chan engine.Event, 64)
	e.mu.Lock()
	e.subs[ch] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.subs, ch)
		e.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	fl.Flush()
	enc := json.NewEncoder(w)
	for {
		select {
		case ev := <-ch:
			if enc.Encode(ev) != nil {
				return
			}
			fl.Flush()
		case <-r.Context().Done():
			return
		}
	}
}

// Subscribers is how many event streams are open (tests wait for the model's).
func (e *Engine) Subscribers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.subs)
}
