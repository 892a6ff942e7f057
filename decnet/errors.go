package decnet

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// The error classes. Every error the SDK returns across a package boundary
// wraps exactly one of them; test with errors.Is.
var (
	// ErrNotFound: the named decky, host, service, image or deployment does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the input was rejected; nothing was changed.
	ErrInvalid = errors.New("invalid")
	// ErrConflict: the change collides with existing state (a duplicate name,
	// a stale version, an operation already in progress).
	ErrConflict = errors.New("conflict")
	// ErrUnauthorized: the caller's identity is missing, unknown or not
	// allowed to perform the call.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable: a dependency (Docker, a worker, the database) could not be
	// reached or is temporarily unable to answer. Retrying later may succeed.
	ErrUnavailable = errors.New("unavailable")
	// ErrFingerprintMismatch: the peer presented a CA-signed certificate whose
	// fingerprint is not the pinned one. Never retried.
	ErrFingerprintMismatch = errors.New("fingerprint mismatch")
	// ErrApplyFailed: the desired state was recorded but the engine could not
	// (fully) apply it. Repeating the call converges.
	ErrApplyFailed = errors.New("apply failed")
)

// Wire error codes, one per class plus the generic internal error.
const (
	CodeNotFound            = "not_found"
	CodeInvalid             = "invalid"
	CodeConflict            = "conflict"
	CodeUnauthorized        = "unauthorized"
	CodeForbidden           = "forbidden"
	CodeUnavailable         = "unavailable"
	CodeFingerprintMismatch = "fingerprint_mismatch"
	CodeApplyFailed         = "apply_failed"
	CodeTooLarge            = "too_large"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeInternal            = "internal"
)

var codeClasses = map[string]error{
	CodeNotFound:            ErrNotFound,
	CodeInvalid:             ErrInvalid,
	CodeTooLarge:            ErrInvalid,
	CodeMethodNotAllowed:    ErrInvalid,
	CodeConflict:            ErrConflict,
	CodeUnauthorized:        ErrUnauthorized,
	CodeForbidden:           ErrUnauthorized,
	CodeUnavailable:         ErrUnavailable,
	CodeFingerprintMismatch: ErrFingerprintMismatch,
	CodeApplyFailed:         ErrApplyFailed,
}

// Error is a classified error that names the thing it is about.
type Error struct {
	Class   error  // one of the Err* classes
	Kind    string // what ID names: "decky", "host", "service", "image", "deployment", …
	ID      string // the name or id of the thing, may be empty
	Message string // human-readable, complete sentence fragment
}

// Errorf returns an *Error of class with a formatted message.
func Errorf(class error, kind, id, format string, args ...any) *Error {
	return &Error{Class: class, Kind: kind, ID: id, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	if e.ID != "" {
		return fmt.Sprintf("%s %q: %v", e.Kind, e.ID, e.Class)
	}
	if e.Kind != "" {
		return fmt.Sprintf("%s: %v", e.Kind, e.Class)
	}
	return fmt.Sprint(e.Class)
}

// Unwrap returns the class.
func (e *Error) Unwrap() error { return e.Class }

// Problem is one validation failure at a field path such as
// "deckies[2].services[0]".
type Problem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every problem found in a value. It unwraps to
// ErrInvalid.
type ValidationError struct {
	Problems []Problem `json:"problems"`
}

// Add records a problem at field.
func (v *ValidationError) Add(field, format string, args ...any) {
	v.Problems = append(v.Problems, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Merge appends the problems of other, each field prefixed with prefix
// ("deckies[0]" + "." + field).
func (v *ValidationError) Merge(prefix string, other *ValidationError) {
	if other == nil {
		return
	}
	for _, p := range other.Problems {
		f := p.Field
		if prefix != "" {
			if f == "" {
				f = prefix
			} else {
				f = prefix + "." + f
			}
		}
		v.Problems = append(v.Problems, Problem{Field: f, Message: p.Message})
	}
}

// Err returns v when it holds a problem and nil otherwise.
func (v *ValidationError) Err() error {
	if v == nil || len(v.Problems) == 0 {
		return nil
	}
	return v
}

func (v *ValidationError) Error() string {
	parts := make([]string, len(v.Problems))
	for i, p := range v.Problems {
		if p.Field == "" {
			parts[i] = p.Message
		} else {
			parts[i] = p.Field + ": " + p.Message
		}
	}
	return "invalid: " + strings.Join(parts, "; ")
}

// Unwrap returns ErrInvalid.
func (v *ValidationError) Unwrap() error { return ErrInvalid }

// WireError is the body of every error response:
// {"error":{"code":"not_found","message":"…"}}. Details carries optional
// structured context such as validation problems or per-decky apply errors.
type WireError struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
	// Status is the HTTP status the error arrived with (not encoded).
	Status int `json:"-"`
}

// WireBody is the JSON envelope of an error response.
type WireBody struct {
	Error WireError `json:"error"`
}

func (w *WireError) Error() string {
	if w.Message == "" {
		return w.Code
	}
	return w.Message
}

// Unwrap returns the class the code maps to, or nil for an unknown code.
func (w *WireError) Unwrap() error { return codeClasses[w.Code] }

// CodeOf returns the wire code for err's class (CodeInternal when err belongs
// to no class).
func CodeOf(err error) string {
	var we *WireError
	if errors.As(err, &we) && we.Code != "" {
		return we.Code
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return CodeNotFound
	case errors.Is(err, ErrInvalid):
		return CodeInvalid
	case errors.Is(err, ErrConflict):
		return CodeConflict
	case errors.Is(err, ErrUnauthorized):
		return CodeUnauthorized
	case errors.Is(err, ErrFingerprintMismatch):
		return CodeFingerprintMismatch
	case errors.Is(err, ErrApplyFailed):
		return CodeApplyFailed
	case errors.Is(err, ErrUnavailable):
		return CodeUnavailable
	}
	return CodeInternal
}

// HTTPStatus returns the HTTP status for a wire code.
func HTTPStatus(code string) int {
	switch code {
	case CodeNotFound:
		return http.StatusNotFound
	case CodeInvalid:
		return http.StatusBadRequest
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodeConflict:
		return http.StatusConflict
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden, CodeFingerprintMismatch:
		return http.StatusForbidden
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// ToWire converts err into the wire form. Validation problems are carried in
// Details["problems"].
func ToWire(err error) WireError {
	var we *WireError
	if errors.As(err, &we) {
		out := *we
		if out.Status == 0 {
			out.Status = HTTPStatus(out.Code)
		}
		return out
	}
	code := CodeOf(err)
	w := WireError{Code: code, Message: err.Error(), Status: HTTPStatus(code)}
	var ve *ValidationError
	if errors.As(err, &ve) {
		w.Details = map[string]any{"problems": ve.Problems}
	}
	return w
}
