package mutatorbench

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agent/agenttest"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/mutator"
	"github.com/decnet-swarm/sdk/decnet/pki"
	"github.com/decnet-swarm/sdk/decnet/repository"
	"github.com/decnet-swarm/sdk/decnet/repository/sqlite"
)

// Fleet shape of the benchmark.
const (
	agents          = 100
	deckiesPerAgent = 10
	deckies         = agents * deckiesPerAgent
	interval        = time.Hour
)

// stateOnDisk puts the agents' state directories on the test's temporary
// disk instead of tmpfs. In-process, the 100 agents share one disk, where
// each real worker has its own: the agent fsyncs its state file and
// directory on every mutation, so on one shared disk those fsyncs queue
// behind each other and dominate the round.
var stateOnDisk = flag.Bool("agent-state-on-disk", false, "keep the agents' state files on the shared disk rather than tmpfs (/dev/shm)")

// stateRoot returns the directory agent state directories are made in.
func stateRoot(b *testing.B) string {
	if !*stateOnDisk {
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			dir, err := os.MkdirTemp("/dev/shm", "dnt-mutatorbench-")
			if err == nil {
				b.Cleanup(func() { _ = os.RemoveAll(dir) })
				return dir
			}
		}
		b.Log("no usable /dev/shm: agent state stays on disk")
	}
	return b.TempDir()
}

// fleet is 100 in-process agents (real mTLS on loopback, a fake engine that
// does no Docker work, real state files) and a SQLite repository holding
// 1,000 deckies spread over them.
type fleet struct {
	servers []*agenttest.Server
	store   *countingStore
	master  *pki.Bundle
	base    time.Time
}

// newFleet builds the fleet; the caller's cleanups stop the agents.
func newFleet(b *testing.B) *fleet {
	b.Helper()
	ctx := context.Background()
	ca, err := pki.NewCA(nil)
	if err != nil {
		b.Fatal(err)
	}
	master, err := ca.NewBundle(pki.IssueRequest{Name: pki.MasterName, Role: pki.RoleMaster, SANs: []string{"127.0.0.1"}})
	if err != nil {
		b.Fatal(err)
	}
	repo, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "decnet.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { repo.Close() })
	f := &fleet{store: &countingStore{Repository: repo}, master: master, base: time.Now().UTC().Truncate(time.Second)}

	iv := interval
	root := stateRoot(b)
	for i := range agents {
		name := fmt.Sprintf("worker-%03d", i)
		wb, err := ca.NewBundle(pki.IssueRequest{Name: name, Role: pki.RoleWorker, SANs: []string{"127.0.0.1"}})
		if err != nil {
			b.Fatal(err)
		}
		wb.MasterFingerprint = master.Fingerprint()
		dir := filepath.Join(b.TempDir(), "agent")
		if err := pki.WriteBundle(dir, wb); err != nil {
			b.Fatal(err)
		}
		p := &agenttest.PKI{CA: ca, Master: master, Worker: wb, WorkerDir: dir}
		srv := agenttest.StartWith(b, p, agenttest.Options{StateDir: filepath.Join(root, name)})
		f.servers = append(f.servers, srv)

		_, port, _ := net.SplitHostPort(srv.Addr)
		portN, _ := strconv.Atoi(port)
		h, err := repo.AddHost(ctx, repository.Host{Name: name, Address: "127.0.0.1", AgentPort: portN,
			Status: repository.HostActive, Fingerprint: wb.Fingerprint()})
		if err != nil {
			b.Fatal(err)
		}
		cfg := decnet.Config{Mode: decnet.ModeSwarm, Network: agenttest.DefaultNetwork()}
		for j := range deckiesPerAgent {
			dn := fmt.Sprintf("d-%03d-%02d", i, j)
			cfg.Deckies = append(cfg.Deckies, decnet.Decky{Name: dn, Services: []string{"ssh"}, HostUUID: h.UUID})
			if _, err := repo.CreateDecky(ctx, repository.Decky{Name: dn, HostUUID: h.UUID, Services: []string{"ssh"},
				Spec: decnet.Decky{Name: dn, Services: []string{"ssh"}}, MutateInterval: &iv,
				LastMutated: f.base, State: repository.DeckyRunning}); err != nil {
				b.Fatal(err)
			}
		}
		// Deploy the shard with a throwaway client, so the benchmark's own
		// clients start cold.
		c := srv.Client(b)
		if _, err := c.Deploy(ctx, cfg, agentclient.DeployOptions{}); err != nil {
			b.Fatalf("deploy %s: %v", name, err)
		}
		_ = c.Close()
	}
	return f
}

func (f *fleet) handshakes() int64 {
	var n int64
	for _, s := range f.servers {
		n += s.Agent.Handshakes()
	}
	return n
}

// countingStore signals when a number of mutation events were recorded
// (alone, or with the decky's new services or state).
type countingStore struct {
	repository.Repository
	mu     sync.Mutex
	want   int
	seen   int
	failed int
	done   chan struct{}
}

func (c *countingStore) expect(n int) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.want, c.seen, c.failed, c.done = n, 0, 0, make(chan struct{})
	return c.done
}

func (c *countingStore) count(e repository.Event) {
	c.mu.Lock()
	c.seen++
	if e.Outcome != mutator.OutcomeOK {
		c.failed++
	}
	if c.seen == c.want {
		close(c.done)
	}
	c.mu.Unlock()
}

func (c *countingStore) AppendEvent(ctx context.Context, e repository.Event) (repository.Event, error) {
	out, err := c.Repository.AppendEvent(ctx, e)
	c.count(e)
	return out, err
}

func (c *countingStore) UpdateDeckyWithEvent(ctx context.Context, d repository.Decky, e repository.Event) (repository.Decky, repository.Event, error) {
	row, out, err := c.Repository.UpdateDeckyWithEvent(ctx, d, e)
	if err == nil {
		c.count(e)
	}
	return row, out, err
}

func (c *countingStore) SetDeckyStateWithEvent(ctx context.Context, name string, state repository.DeckyState, lastError string, e repository.Event) (repository.Event, error) {
	out, err := c.Repository.SetDeckyStateWithEvent(ctx, name, state, lastError, e)
	if err == nil {
		c.count(e)
	}
	return out, err
}

// manualClock is the benchmark's clock: it moves only when told, so each
// round makes every decky due at once; its timers never fire (rounds start
// with Engine.Wake).
type manualClock struct{ now atomic.Int64 }

func (c *manualClock) Now() time.Time                       { return time.Unix(0, c.now.Load()).UTC() }
func (c *manualClock) advance(d time.Duration)              { c.now.Add(int64(d)) }
func (c *manualClock) NewTimer(time.Duration) mutator.Timer { return idleTimer{} }
func (idleTimer) C() <-chan time.Time                       { return nil }
func (idleTimer) Stop() bool                                { return true }

type idleTimer struct{}

// BenchmarkRound measures one scheduled mutation round: 1,000 due deckies
// over 100 agents, dispatched through the default resolver (one
// agentclient per host) at concurrency 8 and 32. It reports the TLS
// handshakes the agents completed per agent per round, counted server-side.
func BenchmarkRound(b *testing.B) {
	// The fleet is shared by the sub-benchmarks and their calibration runs;
	// its agents stop when the top-level benchmark ends.
	f := newFleet(b)
	for _, conc := range []int{8, 32} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			clk := &manualClock{}
			// Start after every mutation earlier runs recorded.
			clk.now.Store(f.base.Add(1000 * interval).UnixNano())
			last, ok, err := f.store.NextDue(context.Background(), interval)
			if err != nil || !ok {
				b.Fatalf("next due: %v %v", ok, err)
			}
			if t := last.Add(interval); t.After(clk.Now()) {
				clk.now.Store(t.UnixNano())
			}
			res, err := mutator.NewResolver(mutator.ResolverConfig{Hosts: f.store, Credentials: agentclient.Credentials{Bundle: f.master}})
			if err != nil {
				b.Fatal(err)
			}
			defer res.Close()
			e, err := mutator.New(mutator.Config{Store: f.store, Resolver: res, Clock: clk, Concurrency: conc,
				Chooser: mustChooser(b)})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			stopped := make(chan error, 1)
			done := f.store.expect(deckies) // the first round: every decky is due
			go func() { stopped <- e.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-stopped; err != nil {
					b.Error(err)
				}
			}()

			// Cold round, untimed: clients are created and connect.
			h0 := f.handshakes()
			<-done
			cold := f.handshakes() - h0

			b.ResetTimer()
			var (
				hs  int64
				cpu time.Duration
			)
			for range b.N {
				b.StopTimer()
				clk.advance(interval)
				done := f.store.expect(deckies)
				h := f.handshakes()
				c := cpuTime()
				b.StartTimer()
				e.Wake()
				<-done
				b.StopTimer()
				cpu += cpuTime() - c
				hs += f.handshakes() - h
				if n := f.store.failedCount(); n > 0 {
					b.Fatalf("%d mutations failed in a round", n)
				}
			}
			b.ReportMetric(float64(hs)/float64(agents*b.N), "handshakes/agent/round")
			b.ReportMetric(float64(cold)/float64(agents), "cold-handshakes/agent")
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/round")
		})
	}
}

// cpuTime returns the CPU time (user and system) the process has used: the
// master and all the agents, which share it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *countingStore) failedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed
}

func mustChooser(b *testing.B) mutator.Chooser {
	c, err := mutator.NewChooser(mutator.ChooserConfig{})
	if err != nil {
		b.Fatal(err)
	}
	return c
}
