package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/pki"
)

// Handler returns the agent's HTTP handler: authorization, routing, the
// request log and metrics. It expects requests from a server using the
// agent's TLS configuration (r.TLS with a verified client certificate);
// without one every request is refused with 401.
func (a *Agent) Handler() http.Handler {
	return http.HandlerFunc(a.serveHTTP)
}

// statusWriter records the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
	code   string // wire error code, for the log
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (a *Agent) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	peer, authErr := pki.AuthorizePinned(r.TLS, a.masterFP, pki.RoleMaster)
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			a.log.ErrorContext(r.Context(), "agent_handler_panic", "path", r.URL.Path, "panic", fmt.Sprint(p))
			if w.status == 0 {
				writeError(w, decnet.Errorf(errInternal, "", "", "internal error"))
			}
		}
		a.logRequest(r, w, peer, time.Since(start))
	}()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if authErr != nil {
		if errors.Is(authErr, decnet.ErrUnauthorized) && peer.Cert == nil {
			writeError(w, authErr) // no verified certificate at all: 401
			return
		}
		// A CA-signed certificate of another role, or not the pinned master.
		writeError(w, &decnet.WireError{Code: decnet.CodeForbidden, Message: "this certificate is not allowed to call the agent"})
		return
	}
	methods, ok := a.routes[r.URL.Path]
	if !ok {
		writeError(w, decnet.Errorf(decnet.ErrNotFound, "path", r.URL.Path, "no such endpoint %s", r.URL.Path))
		return
	}
	h, ok := methods[r.Method]
	if !ok {
		allowed := make([]string, 0, len(methods))
		for m := range methods {
			allowed = append(allowed, m)
		}
		slices.Sort(allowed)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, &decnet.WireError{Code: decnet.CodeMethodNotAllowed,
			Message: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", "))})
		return
	}
	h(w, r)
}

// errInternal classifies faults of the worker itself (a corrupt state file, a
// failed write): they map to the internal wire code, HTTP 500.
var errInternal = errors.New("internal error")

func (a *Agent) logRequest(r *http.Request, w *statusWriter, peer pki.Peer, d time.Duration) {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	path := r.URL.Path
	if _, known := a.routes[path]; !known {
		path = "other" // bound the label set
	}
	attrs := []any{
		"method", r.Method,
		"path", r.URL.Path,
		"status", status,
		"duration_ms", float64(d.Microseconds()) / 1000,
		"peer_cn", peer.CN,
		"remote_addr", r.RemoteAddr,
		"proto", r.Proto,
	}
	if w.code != "" {
		attrs = append(attrs, "error_code", w.code)
	}
	a.log.InfoContext(r.Context(), "agent_request", attrs...)
	if a.metrics != nil {
		a.metrics.observe(r.Method, path, status, d)
	}
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		writeError(w, fmt.Errorf("%w: encode response: %v", errInternal, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

// writeError writes err in the wire form {"error":{"code","message"}}.
func writeError(w http.ResponseWriter, err error) {
	we := decnet.ToWire(err)
	if sw, ok := w.(*statusWriter); ok {
		sw.code = we.Code
	}
	data, mErr := json.Marshal(decnet.WireBody{Error: we})
	if mErr != nil {
		data, _ = json.Marshal(decnet.WireBody{Error: decnet.WireError{Code: we.Code, Message: we.Message}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(we.Status)
	_, _ = w.Write(append(data, '\n'))
}

// readBody reads a request body of at most decnet.MaxRequestBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	tooLarge := &decnet.WireError{Code: decnet.CodeTooLarge,
		Message: fmt.Sprintf("request body exceeds %d bytes", decnet.MaxRequestBytes)}
	if r.ContentLength > decnet.MaxRequestBytes {
		return nil, tooLarge
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, decnet.MaxRequestBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		return nil, decnet.Errorf(decnet.ErrInvalid, "body", "", "read request body: %v", err)
	}
	return data, nil
}
