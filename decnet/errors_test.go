package decnet_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/decnet-swarm/sdk/decnet"
)

func TestWireRoundTripKeepsTheClass(t *testing.T) {
	classes := []error{decnet.ErrNotFound, decnet.ErrInvalid, decnet.ErrConflict, decnet.ErrUnauthorized,
		decnet.ErrUnavailable, decnet.ErrFingerprintMismatch, decnet.ErrApplyFailed}
	for _, class := range classes {
		orig := fmt.Errorf("context: %w", decnet.Errorf(class, "decky", "web-01", "decky %q: %v", "web-01", class))
		w := decnet.ToWire(orig)
		body, err := json.Marshal(decnet.WireBody{Error: w})
		if err != nil {
			t.Fatal(err)
		}
		var back decnet.WireBody
		if err := json.Unmarshal(body, &back); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(&back.Error, class) {
			t.Errorf("%v: decoded wire error %s does not unwrap to its class", class, body)
		}
		for _, other := range classes {
			if other != class && errors.Is(&back.Error, other) {
				t.Errorf("%v: also matches %v", class, other)
			}
		}
	}
}

func TestHTTPStatusOfCodes(t *testing.T) {
	for code, status := range map[string]int{
		decnet.CodeNotFound: http.StatusNotFound, decnet.CodeInvalid: http.StatusBadRequest,
		decnet.CodeTooLarge: http.StatusRequestEntityTooLarge, decnet.CodeForbidden: http.StatusForbidden,
		decnet.CodeApplyFailed: http.StatusInternalServerError, decnet.CodeMethodNotAllowed: http.StatusMethodNotAllowed,
		decnet.CodeConflict: http.StatusConflict, decnet.CodeUnavailable: http.StatusServiceUnavailable,
	} {
		if got := decnet.HTTPStatus(code); got != status {
			t.Errorf("HTTPStatus(%s) = %d, want %d", code, got, status)
		}
	}
	if w := decnet.ToWire(errors.New("boom")); w.Code != decnet.CodeInternal || w.Status != 500 {
		t.Errorf("unclassified error = %+v", w)
	}
}

func TestValidationErrorOnTheWireCarriesProblems(t *testing.T) {
	err := decnet.Decky{Name: "../x"}.Validate(nil)
	w := decnet.ToWire(err)
	if w.Code != decnet.CodeInvalid || w.Details["problems"] == nil {
		t.Fatalf("wire = %+v", w)
	}
}

func TestPlanMutation(t *testing.T) {
	p := decnet.PlanMutation([]string{"ssh", "http", "ftp"}, []string{"ssh", "smtp"})
	if fmt.Sprint(p.Add, p.Remove, p.Keep) != "[smtp] [http ftp] [ssh]" {
		t.Fatalf("plan = %+v", p)
	}
}
