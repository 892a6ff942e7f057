package reaper

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
)

// DefaultStartDelay is how long the default plan waits before it starts, so
// the agent's answer to /self-destruct reaches the master first.
const DefaultStartDelay = 3 * time.Second

// ReaperUnitPrefix starts the name of every reaper unit. Execute never stops
// or disables a unit with this prefix, even when a plan's unit patterns
// match it: that would be the reaper killing itself.
const ReaperUnitPrefix = "decnet-reaper-"

// Plan is what a reaper does. It is plain data and travels as JSON from the
// agent to the reaper process.
type Plan struct {
	// Projects are path.Match patterns of the compose projects whose
	// containers are removed.
	Projects []string `json:"projects"`
	// Units are systemd unit name patterns to stop, then disable.
	Units []string `json:"units"`
	// Delete are absolute glob patterns (filepath.Match syntax) of the paths
	// to delete, interpreted under Root.
	Delete []string `json:"delete"`
	// Keep are absolute glob patterns of paths never deleted, even when a
	// Delete pattern matches them or an ancestor.
	Keep []string `json:"keep"`
	// Root prefixes every Delete and Keep pattern: "" means "/" (production).
	Root string `json:"root,omitempty"`
	// StartDelay is waited before the first step; zero means no wait.
	StartDelay decnet.Duration `json:"start_delay"`
	// Self is the reaper's own temporary directory, deleted last. Spawn sets
	// it; it must be absolute and named decnet-reaper-*.
	Self string `json:"self,omitempty"`
}

// DefaultPlan returns the production plan: the decnet and decnet-* compose
// projects, every decnet-* unit, decnet's install, configuration and state,
// keeping its logs.
func DefaultPlan() Plan {
	return Plan{
		Projects: []string{"decnet", "decnet-*"},
		Units:    []string{"decnet-*"},
		Delete: []string{
			"/opt/decnet*",
			"/etc/decnet",
			"/var/lib/decnet/*",
			"/usr/local/bin/decnet*",
			"/etc/systemd/system/decnet-*.service",
			"/etc/systemd/system/decnet-*.timer",
		},
		Keep:       []string{"/var/log/decnet*"},
		StartDelay: decnet.Duration(DefaultStartDelay),
	}
}

// allowedParents are the directories under which a Delete pattern may name
// an entry, and only an entry whose name begins with "decnet".
var allowedParents = []string{"/opt", "/etc", "/var/lib", "/usr/local/bin", "/etc/systemd/system"}

// protected are directories never deleted, whatever a plan says.
var protected = []string{
	"/", "/bin", "/boot", "/dev", "/etc", "/etc/systemd", "/etc/systemd/system",
	"/home", "/lib", "/lib64", "/opt", "/proc", "/root", "/run", "/sbin", "/srv",
	"/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/local/bin",
	"/usr/sbin", "/var", "/var/lib", "/var/log", "/var/tmp",
}

// Validate reports every problem of the plan as a *decnet.ValidationError:
// a relative, unclean or ".." path or Root; a Delete pattern naming a
// protected directory (/, /etc, /var, /usr, …), a kept path, or anything
// outside decnet's own entries of /opt, /etc, /var/lib, /usr/local/bin and
// /etc/systemd/system; malformed patterns; project patterns without a
// literal prefix of at least three characters (so a plan cannot remove every
// project on the engine); unit patterns not starting with "decnet".
func (p Plan) Validate() error {
	v := &decnet.ValidationError{}
	if p.Root != "" && !cleanAbs(p.Root) {
		v.Add("root", "root %q must be an absolute, clean path without ..", p.Root)
	}
	for i, pat := range p.Projects {
		f := fmt.Sprintf("projects[%d]", i)
		switch {
		case !validPattern(pat):
			v.Add(f, "malformed pattern %q", pat)
		case len(literalPrefix(pat)) < 3:
			v.Add(f, "project pattern %q needs a literal prefix of at least 3 characters", pat)
		}
	}
	for i, pat := range p.Units {
		f := fmt.Sprintf("units[%d]", i)
		switch {
		case !validPattern(pat) || strings.Contains(pat, "/"):
			v.Add(f, "malformed unit pattern %q", pat)
		case !strings.HasPrefix(pat, "decnet"):
			v.Add(f, "unit pattern %q does not start with decnet", pat)
		}
	}
	for i, pat := range p.Keep {
		if !cleanAbs(pat) || !validPattern(pat) {
			v.Add(fmt.Sprintf("keep[%d]", i), "kept path %q must be an absolute, clean pattern without ..", pat)
		}
	}
	for i, pat := range p.Delete {
		f := fmt.Sprintf("delete[%d]", i)
		switch {
		case !cleanAbs(pat) || !validPattern(pat):
			v.Add(f, "path %q must be an absolute, clean pattern without ..", pat)
		case slices.Contains(protected, pat):
			v.Add(f, "path %q is a protected directory", pat)
		case !inDecnetNamespace(pat):
			v.Add(f, "path %q is outside decnet's paths (an entry named decnet* in %s)", pat, strings.Join(allowedParents, ", "))
		default:
			for _, k := range p.Keep {
				if overlaps(pat, k) {
					v.Add(f, "path %q overlaps the kept path %q", pat, k)
				}
			}
		}
	}
	if p.StartDelay < 0 {
		v.Add("start_delay", "start delay %s is negative", p.StartDelay.D())
	}
	if p.Self != "" && (!cleanAbs(p.Self) || !strings.HasPrefix(filepath.Base(p.Self), ReaperUnitPrefix)) {
		v.Add("self", "self %q must be an absolute path named %s*", p.Self, ReaperUnitPrefix)
	}
	return v.Err()
}

// cleanAbs reports whether p is absolute, clean and free of "..".
func cleanAbs(p string) bool {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return false
	}
	return !slices.Contains(strings.Split(p, "/"), "..")
}

func validPattern(p string) bool {
	if p == "" {
		return false
	}
	_, err := path.Match(p, "")
	return err == nil
}

// literalPrefix returns p up to its first glob metacharacter.
func literalPrefix(p string) string {
	if i := strings.IndexAny(p, `*?[\`); i >= 0 {
		return p[:i]
	}
	return p
}

// inDecnetNamespace reports whether pat names an entry beginning with
// "decnet" directly in an allowed parent, or something inside such an entry.
func inDecnetNamespace(pat string) bool {
	comps := strings.Split(pat, "/")
	for i := 2; i < len(comps); i++ {
		parent := strings.Join(comps[:i], "/")
		if slices.Contains(allowedParents, parent) && strings.HasPrefix(comps[i], "decnet") {
			return true
		}
	}
	return false
}

// overlaps reports whether a delete pattern could remove a kept path: one
// matches the other, or one's literal prefix lies inside the other's.
func overlaps(del, keep string) bool {
	if m, _ := path.Match(del, keep); m {
		return true
	}
	if m, _ := path.Match(keep, del); m {
		return true
	}
	dl, kl := literalPrefix(del), literalPrefix(keep)
	return strings.HasPrefix(dl, kl) || strings.HasPrefix(kl, dl)
}

// isKept reports whether abs (an absolute path as the plan sees it, without
// Root) is kept, lies inside a kept path, or contains one.
func (p Plan) isKept(abs string) bool {
	for _, k := range p.Keep {
		if matchesOrAncestor(k, abs) {
			return true
		}
		if strings.HasPrefix(literalPrefix(k), abs+"/") {
			return true
		}
	}
	return false
}

// deletes reports whether the real absolute path real (or an ancestor) would
// be deleted by the plan, given its Root.
func (p Plan) deletes(real string) bool {
	root := p.rootDir()
	rel, err := filepath.Rel(root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return false
	}
	abs := "/" + rel
	if rel == "." {
		abs = "/"
	}
	for _, d := range p.Delete {
		if matchesOrAncestor(d, abs) {
			return true
		}
		// A pattern inside real deletes part of it.
		if strings.HasPrefix(literalPrefix(d), strings.TrimSuffix(abs, "/")+"/") {
			return true
		}
	}
	return false
}

// matchesOrAncestor reports whether pattern matches abs or one of its
// ancestors (up to "/").
func matchesOrAncestor(pattern, abs string) bool {
	for a := abs; ; a = path.Dir(a) {
		if m, _ := path.Match(pattern, a); m {
			return true
		}
		if a == "/" {
			return false
		}
	}
}

func (p Plan) rootDir() string {
	if p.Root == "" {
		return "/"
	}
	return p.Root
}
