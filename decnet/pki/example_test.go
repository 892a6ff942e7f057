package pki_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/decnet-swarm/sdk/decnet/pki"
)

// A CA issues the master's and a worker's identities; the worker's bundle
// goes to disk and serves mTLS; the master's client pins the worker.
func Example() {
	ca, err := pki.NewCA(nil)
	if err != nil {
		panic(err)
	}
	master, err := ca.NewBundle(pki.IssueRequest{Name: pki.MasterName, Role: pki.RoleMaster})
	if err != nil {
		panic(err)
	}
	worker, err := ca.NewBundle(pki.IssueRequest{Name: "worker-1", Role: pki.RoleWorker, SANs: []string{"192.0.2.10"}})
	if err != nil {
		panic(err)
	}
	worker.MasterFingerprint = master.Fingerprint()

	dir, err := os.MkdirTemp("", "pki-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	agentDir := filepath.Join(dir, "agent")
	if err := pki.WriteBundle(agentDir, worker); err != nil {
		panic(err)
	}

	// Worker side: serve with the bundle, authorize only the pinned master.
	bundle, err := pki.LoadBundle(agentDir)
	if err != nil {
		panic(err)
	}
	serverTLS, err := pki.ServerTLSConfig(agentDir, pki.ServerOptions{})
	if err != nil {
		panic(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := pki.AuthorizePinned(r.TLS, bundle.MasterFingerprint, pki.RoleMaster); err != nil {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	_ = &http.Server{TLSConfig: serverTLS, Handler: handler}

	// Master side: dial the worker by IP, pinning its fingerprint.
	clientTLS, err := pki.ClientTLSConfig(master, pki.ExpectPeer{Role: pki.RoleWorker, Fingerprint: worker.Fingerprint()})
	if err != nil {
		panic(err)
	}
	_ = &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS, ForceAttemptHTTP2: true}}

	fmt.Println(bundle.Name(), bundle.Role(), len(bundle.Fingerprint()))
	// Output: worker-1 decnet-worker 64
}
