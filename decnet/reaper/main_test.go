package reaper

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/internal/dockertest"
)

// The test binary doubles as the processes the tests start:
//   - "<binary> reap --plan FILE": a spawned reaper (the copy Spawn made of
//     the test binary); its start delay waits for the file named by
//     envGate, and it writes its result as JSON to envResult.
//   - envChild=spawner: a parent that spawns a detached reaper for the plan
//     in envPlan (with its copy under envSpawnDir), prints the reaper's pid
//     and exits at once.
const (
	envChild    = "DECNET_REAPER_TEST_CHILD"
	envPlan     = "DECNET_REAPER_TEST_PLAN"
	envSpawnDir = "DECNET_REAPER_TEST_SPAWN_DIR"
	envGate     = "DECNET_REAPER_TEST_GATE"
	envResult   = "DECNET_REAPER_TEST_RESULT"
)

func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "reap" && os.Args[2] == "--plan" {
		os.Exit(testReaper(os.Args[3]))
	}
	switch os.Getenv(envChild) {
	case "":
		dockertest.Main(m)
	case "spawner":
		os.Exit(testSpawner())
	default:
		os.Exit(3)
	}
}

// resultFile is the JSON a test reaper leaves behind.
type resultFile struct {
	Done    []string `json:"done"`
	Failed  []string `json:"failed"`
	Removed []string `json:"removed"`
	Error   string   `json:"error,omitempty"`
	PPID    int      `json:"ppid"`
	SID     int      `json:"sid"`
}

func testReaper(planFile string) int {
	gate := os.Getenv(envGate)
	ctx := context.Background()
	res, err := RunPlanFile(ctx, planFile, Deps{Sleep: func(ctx context.Context, _ time.Duration) error {
		return waitForFile(ctx, gate, time.Minute)
	}})
	out := resultFile{Done: res.Done, Removed: res.Removed, PPID: os.Getppid(), SID: sessionID(os.Getpid())}
	for _, f := range res.Failed {
		out.Failed = append(out.Failed, f.Error())
	}
	if err != nil {
		out.Error = err.Error()
	}
	data, _ := json.Marshal(out)
	tmp := os.Getenv(envResult) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return 1
	}
	if err := os.Rename(tmp, os.Getenv(envResult)); err != nil {
		return 1
	}
	return 0
}

func testSpawner() int {
	data, err := os.ReadFile(os.Getenv(envPlan))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var p Plan
	if err := json.Unmarshal(data, &p); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sp, err := Spawn(context.Background(), p, SpawnOptions{Dir: os.Getenv(envSpawnDir), Detached: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(sp.PID)
	return 0
}

// waitForFile polls until name exists or the bound passes.
func waitForFile(ctx context.Context, name string, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		if _, err := os.Stat(name); err == nil {
			return nil
		}
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for %s: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

// sessionID returns the session of pid from /proc (0 when unknown).
func sessionID(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid pgrp session ...
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	var state string
	var ppid, pgrp, sid int
	if _, err := fmt.Sscanf(s[i+1:], " %s %d %d %d", &state, &ppid, &pgrp, &sid); err != nil {
		return 0
	}
	return sid
}
