package agent

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"

	"github.com/decnet-swarm/sdk/decnet"
)

// The request decoders must never panic, must reject with ErrInvalid, and
// what they accept must satisfy the invariants the handlers rely on. Seed
// corpora live in testdata/fuzz/<FuzzName>.

func fuzzNetwork() decnet.Network {
	return decnet.Network{
		Driver:  decnet.DriverBridge,
		Subnet:  netip.MustParsePrefix("172.30.254.0/24"),
		Gateway: netip.MustParseAddr("172.30.254.1"),
		IPRange: netip.MustParsePrefix("172.30.254.0/28"),
	}
}

func FuzzDecodeDeploy(f *testing.F) {
	for _, s := range []string{
		`{"config":{"mode":"swarm","deckies":[{"name":"a","services":["ssh"]}]}}`,
		`{"config":{"mode":"swarm","deckies":[{"name":"a","ip":"172.30.254.7","services":["ssh","http"],"os":"windows"}]},"dry_run":true}`,
		`{"config":{"deckies":[{"name":"a","services":["ssh"],"service_config":{"ssh":{"PASSWORD":"x"}},"mutate_interval":"5m"}]}}`,
		`{"config":{"mode":"swarm","network":{"driver":"macvlan","parent":"eth0"},"deckies":[]}}`,
		`{"config":{"mode":"unihost","deckies":[{"name":"a","services":["ssh"]},{"name":"a","services":["ssh"]}]}}`,
		`{"config":{}}`, `{}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	network, cat := fuzzNetwork(), decnet.DefaultCatalog()
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeDeploy(data, network, cat)
		if err != nil {
			if !errors.Is(err, decnet.ErrInvalid) {
				t.Fatalf("rejection %v does not wrap ErrInvalid", err)
			}
			return
		}
		if req.Config.Network != network {
			t.Fatalf("accepted config kept the sender's network %+v", req.Config.Network)
		}
		if err := req.Config.Validate(cat); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
		out, err := allocateIPs(req.Config, nil)
		if err != nil {
			if !errors.Is(err, decnet.ErrInvalid) {
				t.Fatalf("allocation error %v does not wrap ErrInvalid", err)
			}
			return
		}
		seen := map[netip.Addr]bool{}
		for _, d := range out.Deckies {
			if !d.IP.IsValid() || network.CheckAddr(d.IP) != nil || seen[d.IP] {
				t.Fatalf("allocated unusable or duplicate address %v for %q", d.IP, d.Name)
			}
			seen[d.IP] = true
		}
		if err := out.Validate(cat); err != nil {
			t.Fatalf("allocation produced an invalid config: %v", err)
		}
	})
}

func FuzzDecodeTeardown(f *testing.F) {
	for _, s := range []string{`{}`, `{"decky_id":"web-1"}`, `{"decky_id":""}`, `{"decky_id":"../../etc"}`, `{"decky_id":1}`, `{"id":"x"}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeTeardown(data)
		if err != nil {
			if !errors.Is(err, decnet.ErrInvalid) {
				t.Fatalf("rejection %v does not wrap ErrInvalid", err)
			}
			return
		}
		if req.DeckyID != "" && !decnet.ValidDeckyName(req.DeckyID) {
			t.Fatalf("accepted decky id %q", req.DeckyID)
		}
		// Accepted input is exactly one JSON object.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("accepted %q, which is not a JSON object: %v", data, err)
		}
	})
}

func FuzzDecodeMutate(f *testing.F) {
	for _, s := range []string{
		`{"decky_id":"web-1","services":["ssh","smtp"]}`,
		`{"decky_id":"web-1","services":["ssh"],"dry_run":true}`,
		`{"decky_id":"web-1","services":[]}`,
		`{"decky_id":"web-1","services":["ssh","ssh"]}`,
		`{"decky_id":"Web_1","services":["ssh"]}`,
		`{"decky_id":"web-1","services":["nope"]}`,
		`{"decky_id":"web-1","services":["ssh"],"extra":1}`,
		`{"decky_id":"web-1","services":"ssh"}`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	cat := decnet.DefaultCatalog()
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeMutate(data, cat)
		if err != nil {
			if !errors.Is(err, decnet.ErrInvalid) {
				t.Fatalf("rejection %v does not wrap ErrInvalid", err)
			}
			return
		}
		if !decnet.ValidDeckyName(req.DeckyID) {
			t.Fatalf("accepted decky id %q", req.DeckyID)
		}
		if err := decnet.ValidateServices("services", req.Services, cat); err != nil {
			t.Fatalf("accepted services %q: %v", req.Services, err)
		}
		plan := decnet.PlanMutation([]string{"ssh", "http"}, req.Services)
		if len(plan.Add)+len(plan.Keep) != len(req.Services) {
			t.Fatalf("plan %+v does not cover %v", plan, req.Services)
		}
	})
}
