package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

var errClass = errors.New("class")

func TestExecuteExitCodesAndOneLine(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		fail error
		want int
	}{
		"ok":              {args: []string{"do"}, want: ExitOK},
		"bare root":       {args: nil, want: ExitOK},
		"unknown command": {args: []string{"nope"}, want: ExitUsage},
		"bad flag":        {args: []string{"do", "--nope"}, want: ExitUsage},
		"extra argument":  {args: []string{"do", "x"}, want: ExitUsage},
		"usage error":     {args: []string{"do"}, fail: Usagef("bad %s", "input"), want: ExitUsage},
		"usage class":     {args: []string{"do"}, fail: errClass, want: ExitUsage},
		"failure":         {args: []string{"do"}, fail: errors.New("boom"), want: ExitFailure},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			root := NewRoot("tool", "a tool", &out, &errb)
			root.AddCommand(&cobra.Command{Use: "do", Args: ExactArgs(0), RunE: func(*cobra.Command, []string) error { return tc.fail }})
			err := Execute(t.Context(), root, tc.args, &errb, errClass)
			if got := ExitCode(err); got != tc.want {
				t.Fatalf("exit code %d, want %d (err %v)", got, tc.want, err)
			}
			if tc.want != ExitOK {
				if n := strings.Count(errb.String(), "\n"); n != 1 || !strings.HasPrefix(errb.String(), "tool: ") {
					t.Fatalf("stderr = %q, want one line starting with the program name", errb.String())
				}
			}
		})
	}
}
