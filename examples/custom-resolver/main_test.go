package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The example runs and each decky goes through its playlist, on the target
// its name selects. The run lasts 8 intervals so that a loaded machine still
// sees every decky's first rotation.
func TestRun(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"-for", "4s", "-interval", "500ms"}, &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	s := out.String()
	for _, want := range []string{
		"[dmz] plan dmz-web -> http,ssh",
		"[dmz] mutate dmz-web -> http,ssh",
		"[dmz] mutate dmz-mail -> http,ssh",
		"[lan] mutate lan-files -> http,ssh",
		"lan-files via lan scheduled [ssh] -> [http ssh] ok",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestRejectsBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"-interval", "0s"}, &out, &errb); err == nil {
		t.Error("run accepted -interval 0s")
	}
	if out.Len() != 0 {
		t.Errorf("rejected run printed %q", out.String())
	}
}
