package compose

import (
	"maps"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// MarshalYAML renders p as a compose file. Values are escaped for compose's
// variable interpolation ("$" becomes "$$"), so loading the file back yields
// exactly the values of p: what the compose CLI would run is what the engine
// runs.
//
// The file has no top-level "name": docker-compose v1 (Debian's
// /usr/bin/docker-compose) rejects it, so the CLI must be given the project
// with -p (as decnet always does: `docker compose -p decnet -f <file> ps`).
func MarshalYAML(p *types.Project) ([]byte, error) {
	out := *p
	out.Name = ""
	out.Services = make(types.Services, len(p.Services))
	for k, s := range p.Services {
		s.Environment = escapeEnv(s.Environment)
		s.Command = escapeSlice(s.Command)
		s.Entrypoint = escapeSlice(s.Entrypoint)
		s.CapAdd = escapeSlice(s.CapAdd)
		s.Labels = escapeMap(s.Labels)
		s.Hostname = escape(s.Hostname)
		s.Image = escape(s.Image)
		out.Services[k] = s
	}
	return out.MarshalYAML()
}

func escape(s string) string { return strings.ReplaceAll(s, "$", "$$") }

func escapeSlice[S ~[]string](in S) S {
	if in == nil {
		return nil
	}
	out := make(S, len(in))
	for i, s := range in {
		out[i] = escape(s)
	}
	return out
}

func escapeMap(in types.Labels) types.Labels {
	if in == nil {
		return nil
	}
	out := maps.Clone(in)
	for k, v := range out {
		out[k] = escape(v)
	}
	return out
}

func escapeEnv(in types.MappingWithEquals) types.MappingWithEquals {
	if in == nil {
		return nil
	}
	out := make(types.MappingWithEquals, len(in))
	for k, v := range in {
		if v == nil {
			out[k] = nil
			continue
		}
		e := escape(*v)
		out[k] = &e
	}
	return out
}
