package sqldb

import (
	"regexp"
	"slices"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

var (
	hostNameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	uuidRE        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)
	sha256HexRE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	maxTextLength = 4096
)

func validHostUUID(s string) bool { return uuidRE.MatchString(s) }

func checkHostUUID(v *decnet.ValidationError, field, s string) {
	if s == "" {
		v.Add(field, "required")
	} else if !validHostUUID(s) {
		v.Add(field, "%q is not a valid host uuid", s)
	}
}

// normHost validates h and fills its defaults. create allows an empty UUID.
func normHost(h repository.Host, create bool) (repository.Host, error) {
	v := &decnet.ValidationError{}
	if h.UUID != "" || !create {
		checkHostUUID(v, "uuid", h.UUID)
	}
	switch {
	case h.Name == "":
		v.Add("name", "required")
	case !hostNameRE.MatchString(h.Name):
		v.Add("name", "%q must be 1-64 characters: a letter or digit, then letters, digits, '.', '_' or '-'", h.Name)
	}
	if len(h.Address) > 253 {
		v.Add("address", "longer than 253 characters")
	}
	if h.AgentPort == 0 && create {
		h.AgentPort = repository.DefaultAgentPort
	}
	if h.AgentPort < 1 || h.AgentPort > 65535 {
		v.Add("agent_port", "%d is not a TCP port (1-65535)", h.AgentPort)
	}
	// On update the runtime fields are not written, so not checked.
	if create {
		if h.Status == "" {
			h.Status = repository.HostEnrolled
		}
		if !h.Status.Valid() {
			v.Add("status", "unknown host status %q (enrolled, active or offline)", h.Status)
		}
	}
	if h.Fingerprint != "" && !sha256HexRE.MatchString(h.Fingerprint) {
		v.Add("fingerprint", "must be 64 lowercase hex digits (SHA-256)")
	}
	if len(h.Notes) > maxTextLength {
		v.Add("notes", "longer than %d characters", maxTextLength)
	}
	for k := range h.Labels {
		if k == "" {
			v.Add("labels", "empty label key")
		}
	}
	if !create && h.EnrolledAt.IsZero() {
		v.Add("enrolled_at", "required")
	}
	if err := v.Err(); err != nil {
		return h, err
	}
	h.EnrolledAt = ts(h.EnrolledAt)
	h.LastHeartbeat = ts(h.LastHeartbeat)
	if len(h.Labels) == 0 {
		h.Labels = nil
	}
	return h, nil
}

// normDecky validates d and makes its top-level fields and its Spec agree.
// The top-level fields win; an empty one is taken from the Spec (Name,
// Services, MutateInterval, LastMutated, and on create HostUUID).
func normDecky(d repository.Decky, create bool) (repository.Decky, error) {
	v := &decnet.ValidationError{}
	if d.Name == "" {
		d.Name = d.Spec.Name
	}
	if d.Spec.Name != "" && d.Spec.Name != d.Name {
		v.Add("spec.name", "%q differs from the decky name %q", d.Spec.Name, d.Name)
	}
	if len(d.Services) == 0 {
		d.Services = d.Spec.Services
	}
	d.Services = slices.Clone(d.Services)
	if create && d.HostUUID == "" {
		d.HostUUID = d.Spec.HostUUID
	}
	if d.HostUUID != "" && !validHostUUID(d.HostUUID) {
		v.Add("host_uuid", "%q is not a valid host uuid", d.HostUUID)
	}
	if d.MutateInterval == nil && d.Spec.MutateInterval != nil {
		iv := d.Spec.MutateInterval.D()
		d.MutateInterval = &iv
	}
	if d.MutateInterval != nil {
		iv := *d.MutateInterval
		if iv < 0 {
			v.Add("mutate_interval", "must not be negative")
		}
		iv = iv.Truncate(time.Microsecond)
		d.MutateInterval = &iv
	}
	if d.LastMutated.IsZero() {
		d.LastMutated = d.Spec.LastMutated
	}
	if d.State == "" && create {
		d.State = repository.DeckyPending
	}
	// An empty state on update means "not written" (see updateDecky).
	if d.State != "" && !d.State.Valid() {
		v.Add("state", "unknown decky state %q (pending, running, degraded, failed or tearing_down)", d.State)
	}
	if len(d.LastError) > maxTextLength {
		d.LastError = d.LastError[:maxTextLength]
	}
	spec := d.Spec.Clone()
	spec.Name = d.Name
	spec.Services = slices.Clone(d.Services)
	spec.HostUUID = d.HostUUID
	spec.MutateInterval = nil
	if d.MutateInterval != nil && *d.MutateInterval >= 0 {
		spec.MutateInterval = decnet.Interval(*d.MutateInterval)
	}
	spec.LastMutated = ts(d.LastMutated)
	if len(spec.ServiceConfig) == 0 {
		spec.ServiceConfig = nil
	}
	// The repository knows no catalog, and a rotated decky keeps the
	// settings of services it may get back: service_config keys are only
	// checked for syntax here.
	for svc, kv := range spec.ServiceConfig {
		if !decnet.ValidServiceName(svc) {
			v.Add("spec.service_config."+svc, "not a valid service name")
		}
		for k := range kv {
			if !decnet.ValidEnvKey(k) {
				v.Add("spec.service_config."+svc+"."+k, "not a valid environment variable name")
			}
		}
	}
	check := spec
	check.ServiceConfig = nil
	sv := &decnet.ValidationError{}
	if err := check.Validate(nil); err != nil {
		if ve, ok := err.(*decnet.ValidationError); ok {
			sv = ve
		}
	}
	for _, p := range sv.Problems {
		// Report the top-level fields where the caller set them.
		switch p.Field {
		case "name", "mutate_interval":
			v.Add(p.Field, "%s", p.Message)
		default:
			if len(p.Field) >= 8 && p.Field[:8] == "services" {
				v.Add(p.Field, "%s", p.Message)
			} else {
				v.Add("spec."+p.Field, "%s", p.Message)
			}
		}
	}
	if err := v.Err(); err != nil {
		return d, err
	}
	d.Spec = spec
	d.LastMutated = ts(d.LastMutated)
	return d, nil
}

// storedSpec is the Spec as stored: the fields held in their own columns are
// dropped so the columns are the single source of truth.
func storedSpec(d repository.Decky) string {
	s := d.Spec.Clone()
	s.Name, s.Services, s.HostUUID, s.MutateInterval, s.LastMutated = "", nil, "", nil, time.Time{}
	return encodeJSON(s)
}

func checkNonNegative(field string, d time.Duration) error {
	if d < 0 {
		v := &decnet.ValidationError{}
		v.Add(field, "must not be negative")
		return v
	}
	return nil
}

func invalid(field, format string, args ...any) error {
	v := &decnet.ValidationError{}
	v.Add(field, format, args...)
	return v
}
