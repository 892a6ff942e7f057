package swarm

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/pki"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// AuthorizeWorker returns the host a worker's verified client certificate
// belongs to. The certificate must carry the worker role, its fingerprint
// must not be denied (a decommissioned worker's never is again) and must
// match a host row whose name is the certificate's CN; otherwise the error
// wraps decnet.ErrUnauthorized. Repository failures are returned as they
// are (decnet.ErrUnavailable, …).
func AuthorizeWorker(ctx context.Context, repo repository.Repository, cert *x509.Certificate) (repository.Host, error) {
	if cert == nil {
		return repository.Host{}, decnet.Errorf(decnet.ErrUnauthorized, "peer", "", "no client certificate")
	}
	cn := cert.Subject.CommonName
	if role, ok := pki.RoleOf(cert); !ok || role != pki.RoleWorker {
		return repository.Host{}, decnet.Errorf(decnet.ErrUnauthorized, "peer", cn, "certificate of %q is not a worker's", cn)
	}
	fp := pki.Fingerprint(cert)
	denied, err := repo.IsDenied(ctx, fp)
	if err != nil {
		return repository.Host{}, err
	}
	if denied {
		return repository.Host{}, decnet.Errorf(decnet.ErrUnauthorized, "peer", cn, "certificate of %q has been revoked", cn)
	}
	h, err := repo.GetHostByFingerprint(ctx, fp)
	if errors.Is(err, decnet.ErrNotFound) {
		return repository.Host{}, decnet.Errorf(decnet.ErrUnauthorized, "peer", cn, "certificate of %q belongs to no enrolled host", cn)
	}
	if err != nil {
		return repository.Host{}, err
	}
	if h.Name != cn {
		return repository.Host{}, decnet.Errorf(decnet.ErrUnauthorized, "peer", cn, "certificate of %q is recorded for host %q", cn, h.Name)
	}
	return h, nil
}

// HeartbeatResponse is the body of a successful heartbeat.
type HeartbeatResponse struct {
	Status string `json:"status"` // "ok"
}

// HeartbeatOptions tune HeartbeatHandler; zero fields mean the defaults.
type HeartbeatOptions struct {
	// Now is the heartbeat time; nil means time.Now.
	Now func() time.Time
	// Logger receives refusals and failures; nil discards.
	Logger *slog.Logger
}

// HeartbeatHandler is the worker heartbeat endpoint: a POST whose body is
// the agent's status (decnet.StatusResponse, strictly decoded, at most
// decnet.MaxRequestBytes), from a worker authorized by AuthorizeWorker over
// mutual TLS (serve it with a pki.ServerTLSConfig listener). It records the
// heartbeat (host active, each decky's runtime state) and answers 200
// {"status":"ok"}. A refused certificate gets 403 and changes nothing.
func HeartbeatHandler(repo repository.Repository, opts HeartbeatOptions) http.Handler {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, &decnet.WireError{Code: decnet.CodeMethodNotAllowed, Message: "method not allowed"})
			return
		}
		peer, err := pki.Authorize(r.TLS, pki.RoleWorker)
		var h repository.Host
		if err == nil {
			h, err = AuthorizeWorker(ctx, repo, peer.Cert)
		}
		if errors.Is(err, decnet.ErrUnauthorized) {
			log.WarnContext(ctx, "swarm_heartbeat_refused", "peer_cn", peer.CN, "fingerprint", peer.Fingerprint, "error", err)
			writeError(w, &decnet.WireError{Code: decnet.CodeForbidden, Message: "forbidden"})
			return
		}
		if err != nil {
			log.ErrorContext(ctx, "swarm_heartbeat_failed", "peer_cn", peer.CN, "error", err)
			writeError(w, err)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, decnet.MaxRequestBytes))
		if err != nil {
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				writeError(w, &decnet.WireError{Code: decnet.CodeTooLarge, Message: "request body too large"})
				return
			}
			writeError(w, decnet.Errorf(decnet.ErrInvalid, "body", "", "read request body: %v", err))
			return
		}
		var st decnet.StatusResponse
		if err := decnet.DecodeStrict(body, &st); err != nil {
			writeError(w, err)
			return
		}
		hb := repository.Heartbeat{HostUUID: h.UUID, At: now()}
		for _, d := range st.Deckies {
			state := repository.DeckyDegraded
			if d.Running {
				state = repository.DeckyRunning
			}
			hb.Deckies = append(hb.Deckies, repository.DeckyRuntime{Name: d.Name, State: state})
		}
		if err := repo.RecordHeartbeat(ctx, hb); err != nil {
			log.ErrorContext(ctx, "swarm_heartbeat_failed", "host", h.Name, "error", err)
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, HeartbeatResponse{Status: "ok"})
	})
}

func writeError(w http.ResponseWriter, err error) {
	if decnet.CodeOf(err) == decnet.CodeInternal {
		err = &decnet.WireError{Code: decnet.CodeInternal, Message: "internal error"} // no internals to the peer
	}
	we := decnet.ToWire(err)
	writeJSON(w, we.Status, decnet.WireBody{Error: we})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
