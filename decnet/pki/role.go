package pki

import (
	"regexp"
	"strings"

	"github.com/decnet-swarm/sdk/decnet"
)

// Role is the function of an identity, carried as the certificate's single
// OU. Authorization decisions are made on the role, never on the CN.
type Role string

// The roles.
const (
	// RoleMaster is the master (decnet-master): the only identity a worker
	// agent accepts calls from.
	RoleMaster Role = "decnet-master"
	// RoleWorker is a worker host running decnet-agent.
	RoleWorker Role = "decnet-worker"
	// RoleOperator is a client of the master's operator API.
	RoleOperator Role = "decnet-operator"
)

// MasterName is the CN of the master's own identity.
const MasterName = "decnet-master"

// Roles returns every role, in a stable order.
func Roles() []Role { return []Role{RoleMaster, RoleWorker, RoleOperator} }

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool {
	switch r {
	case RoleMaster, RoleWorker, RoleOperator:
		return true
	}
	return false
}

// String returns the OU value of the role.
func (r Role) String() string { return string(r) }

// ParseRole accepts a role by its OU value ("decnet-worker") or its short
// name ("worker"), case-insensitively. Anything else is an error that
// unwraps to decnet.ErrInvalid.
func ParseRole(s string) (Role, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if !strings.HasPrefix(v, "decnet-") {
		v = "decnet-" + v
	}
	if r := Role(v); r.Valid() {
		return r, nil
	}
	return "", decnet.Errorf(decnet.ErrInvalid, "role", s, "unknown role %q (want master, worker or operator)", s)
}

// identityNameRE is a lowercase DNS label: 1-63 characters of [a-z0-9-],
// not starting or ending with '-'. It is a subset of decnet.ValidDeckyName
// and always a valid DNS SAN.
var identityNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// reservedNames may never be the name of a worker: every role name plus
// names that other components (or humans reading logs) treat as special.
var reservedNames = map[string]bool{
	string(RoleMaster):   true,
	string(RoleWorker):   true,
	string(RoleOperator): true,
	"decnet":             true,
	"localhost":          true,
	"swarmctl":           true,
}

// ValidName reports whether s can be the name (CN) of an identity: a
// lowercase DNS label, 1-63 characters of [a-z0-9-], not starting or ending
// with '-'.
func ValidName(s string) bool { return identityNameRE.MatchString(s) }

// Reserved reports whether name is reserved and cannot be issued to a worker
// (every role name, "decnet", "localhost" and "swarmctl").
func Reserved(name string) bool { return reservedNames[strings.ToLower(name)] }
