package reaper

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/decnet-swarm/sdk/decnet"
)

func TestDefaultPlanIsValid(t *testing.T) {
	p := DefaultPlan()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.StartDelay.D() != DefaultStartDelay {
		t.Fatalf("start delay %s, want %s", p.StartDelay.D(), DefaultStartDelay)
	}
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := decnet.DecodeStrict(data, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(p, back); d != "" {
		t.Fatalf("JSON round trip (-want +got):\n%s", d)
	}
}

func TestValidateRefuses(t *testing.T) {
	cases := map[string]func(*Plan){
		"root dir":           func(p *Plan) { p.Delete = append(p.Delete, "/") },
		"etc":                func(p *Plan) { p.Delete = append(p.Delete, "/etc") },
		"var":                func(p *Plan) { p.Delete = append(p.Delete, "/var") },
		"usr":                func(p *Plan) { p.Delete = append(p.Delete, "/usr") },
		"opt itself":         func(p *Plan) { p.Delete = append(p.Delete, "/opt") },
		"everything in opt":  func(p *Plan) { p.Delete = append(p.Delete, "/opt/*") },
		"kept path":          func(p *Plan) { p.Delete = append(p.Delete, "/var/log/decnet") },
		"inside kept path":   func(p *Plan) { p.Delete = append(p.Delete, "/var/log/decnet/agent.log") },
		"kept under deleted": func(p *Plan) { p.Keep = append(p.Keep, "/opt/decnet/keep") },
		"outside roots":      func(p *Plan) { p.Delete = append(p.Delete, "/home/decnet") },
		"unrelated in etc":   func(p *Plan) { p.Delete = append(p.Delete, "/etc/passwd") },
		"relative":           func(p *Plan) { p.Delete = append(p.Delete, "opt/decnet") },
		"dot dot":            func(p *Plan) { p.Delete = append(p.Delete, "/opt/decnet/../../etc") },
		"unclean":            func(p *Plan) { p.Delete = append(p.Delete, "/opt//decnet") },
		"bad pattern":        func(p *Plan) { p.Delete = append(p.Delete, "/opt/decnet[") },
		"relative root":      func(p *Plan) { p.Root = "tmp/x" },
		"dot dot root":       func(p *Plan) { p.Root = "/tmp/../x" },
		"relative keep":      func(p *Plan) { p.Keep = append(p.Keep, "var/log") },
		"every project":      func(p *Plan) { p.Projects = append(p.Projects, "*") },
		"short project":      func(p *Plan) { p.Projects = append(p.Projects, "d*") },
		"foreign unit":       func(p *Plan) { p.Units = append(p.Units, "sshd.service") },
		"every unit":         func(p *Plan) { p.Units = append(p.Units, "*") },
		"negative delay":     func(p *Plan) { p.StartDelay = -1 },
		"self not reaper":    func(p *Plan) { p.Self = "/var/tmp/other" },
		"relative self":      func(p *Plan) { p.Self = "decnet-reaper-1" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			p := DefaultPlan()
			mutate(&p)
			err := p.Validate()
			if !errors.Is(err, decnet.ErrInvalid) {
				t.Fatalf("Validate: %v, want ErrInvalid", err)
			}
			var ve *decnet.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 || ve.Problems[0].Field == "" {
				t.Fatalf("no field path in %v", err)
			}
		})
	}
}

func TestDeletes(t *testing.T) {
	p := DefaultPlan()
	p.Root = "/tmp/r"
	for path, want := range map[string]bool{
		"/tmp/r/opt/decnet-reaper-1":       true,
		"/tmp/r/opt/decnet/x":              true,
		"/tmp/r/var/lib/decnet/x":          true,
		"/tmp/r/var/lib":                   true, // holds /var/lib/decnet/*
		"/tmp/r/var/tmp/decnet-reaper-1":   false,
		"/var/tmp/decnet-reaper-1":         false,
		"/tmp/r/var/log/decnet/agent.log":  false,
		"/opt/decnet":                      false, // outside Root
		"/tmp/r/usr/local/bin/decnet-copy": true,
	} {
		if got := p.deletes(path); got != want {
			t.Errorf("deletes(%s) = %v, want %v", path, got, want)
		}
	}
}
