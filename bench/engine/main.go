// Command engine benchmarks decnet's engine against the compose CLI and
// against the floor of bare Engine API calls, on the local Docker daemon:
//
//	go run ./bench/engine [-deckies 20] [-runs 5] [-mutations 9] [-concurrency N]
//
// Scenarios, timed in the same run:
//   - deploy: N deckies × 3 services (ssh, http, ftp) from nothing, -runs
//     times per contender, contenders interleaved (floor, engine, compose);
//   - mutate: on the last deployed fleets, one decky swaps 2 of its 3
//     services ({ssh,http,ftp} ↔ {ssh,smtp,telnet}), -mutations times,
//     interleaved (engine on decky 0, floor on decky 1 of the engine's
//     fleet, compose on decky 0 of its own fleet).
//
// Contenders: (a) engine.Apply / engine.ApplyDecky; (b) `docker-compose -p P
// -f <file rendered by the engine> up -d --remove-orphans` (`docker compose`
// when the plugin exists); (c) the floor: raw HTTP calls to the Engine API
// over the socket for just the containers that change, with the same
// container specs (deploy: create the network, create+start every base and
// then its services, all deckies at once; mutate: remove the 2 old services,
// then create+start the 2 new, each pair concurrently). Images are built
// locally from internal/testdecoy; everything created is removed at the end.
// The last lines print medians and ratios.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/compose"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/internal/dockertest"
)

var (
	setA = []string{"ssh", "http", "ftp"}
	setB = []string{"ssh", "smtp", "telnet"}
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/engine:", err)
		os.Exit(1)
	}
}

type bench struct {
	admin    *engine.Engine
	img      dockertest.ImageSet
	cat      *decnet.Catalog
	subnets  map[string]decnet.Network // by contender tag: "e" (engine and floor), "c" (compose)
	deckies  int
	dir      string
	compose  []string // the compose CLI command
	floor    *floorClient
	prefix   string
	conc     int
	projects []string
}

func run() error {
	deckies := flag.Int("deckies", 20, "deckies in the deploy scenario")
	runs := flag.Int("runs", 5, "deploy runs per contender")
	mutations := flag.Int("mutations", 9, "mutations per contender")
	conc := flag.Int("concurrency", 0, "engine Concurrency (0 = the engine's default)")
	flag.Parse()
	if *deckies < 2 || *deckies > 200 || *runs < 1 || *mutations < 1 {
		return errors.New("need 2 <= -deckies <= 200, -runs >= 1, -mutations >= 1")
	}

	// Ctrl-C or SIGTERM cancels the run; the deferred cleanups still remove
	// what it made (they use their own contexts).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{deckies: *deckies, conc: *conc, subnets: map[string]decnet.Network{}}
	var err error
	if b.compose, err = composeCLI(); err != nil {
		return err
	}
	if b.admin, err = engine.New(engine.Config{Project: "dnt-bench-admin"}); err != nil {
		return err
	}
	defer b.admin.Close()
	if err := b.admin.Ping(ctx); err != nil {
		return err
	}
	b.prefix = fmt.Sprintf("bn%d", os.Getpid()%100000)
	for _, tag := range []string{"e", "c"} {
		subnet, release, err := dockertest.ReserveSubnet(ctx, b.admin)
		if err != nil {
			return err
		}
		defer release()
		b.subnets[tag] = decnet.Network{Driver: decnet.DriverBridge, Subnet: subnet, Gateway: dockertest.Addr(subnet, 1)}
	}
	var imgDir string
	b.img, imgDir, err = dockertest.BuildImageSet(ctx, b.admin)
	if imgDir != "" {
		defer os.RemoveAll(imgDir)
	}
	if err != nil {
		return err
	}
	defer func() {
		_ = b.admin.RemoveImage(context.Background(), b.img.Decoy)
		_ = b.admin.RemoveImage(context.Background(), b.img.Pause)
	}()
	if b.dir, err = os.MkdirTemp("", "dnt-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	if b.cat, err = dockertest.NewCatalog(b.img, "ssh", "http", "ftp", "smtp", "telnet"); err != nil {
		return err
	}
	b.floor = newFloor(engine.DefaultHost)
	defer b.floor.close()
	defer b.cleanupAll()

	fmt.Printf("bench/engine: %d deckies × 3 services, %d deploy runs, %d mutations, compose CLI %q, engine concurrency %d\n",
		b.deckies, *runs, *mutations, strings.Join(b.compose, " "), *conc)
	res := map[string][]time.Duration{}
	add := func(k string, d time.Duration) {
		res[k] = append(res[k], d)
		fmt.Printf("  %-16s %8.3fs\n", k, d.Seconds())
	}
	var eng *contender
	var cmp *contender
	for r := range *runs {
		last := r == *runs-1
		d, err := b.floorDeploy(ctx, r)
		if err != nil {
			return fmt.Errorf("floor run %d: %w", r, err)
		}
		add("floor_deploy", d)
		if eng, err = b.newContender("e", r, false); err != nil {
			return err
		}
		if d, err = eng.deploy(ctx); err != nil {
			return fmt.Errorf("engine run %d: %w", r, err)
		}
		add("engine_deploy", d)
		if cmp, err = b.newContender("c", r, true); err != nil {
			return err
		}
		if d, err = cmp.deploy(ctx); err != nil {
			return fmt.Errorf("compose run %d: %w", r, err)
		}
		add("compose_deploy", d)
		if !last {
			eng.close()
			cmp.close()
			if err := errors.Join(b.remove(eng.project), b.remove(cmp.project)); err != nil {
				return err
			}
		}
	}
	defer eng.close()
	defer cmp.close()
	// Mutations on the last deployed fleets, interleaved: the engine on
	// decky 0, the floor on decky 1 of the same fleet, compose on decky 0 of
	// its own.
	floorCur := slices.Clone(setA)
	for range *mutations {
		d, err := eng.mutate(ctx)
		if err != nil {
			return fmt.Errorf("engine mutate: %w", err)
		}
		add("engine_mutate", d)
		to := next(floorCur)
		t0 := time.Now()
		if err := b.floor.mutate(ctx, eng.project, b.cat, eng.cfg.Deckies[1].Name, floorCur, to); err != nil {
			return fmt.Errorf("floor mutate: %w", err)
		}
		add("floor_mutate", time.Since(t0))
		floorCur = to
		if d, err = cmp.mutate(ctx); err != nil {
			return fmt.Errorf("compose mutate: %w", err)
		}
		add("compose_mutate", d)
	}
	eng.cfg.Deckies[1].Services = floorCur
	if err := errors.Join(checkRunning(ctx, eng.eng, eng.cfg), checkRunning(ctx, cmp.eng, cmp.cfg)); err != nil {
		return fmt.Errorf("after mutations: %w", err)
	}

	med := func(k string) time.Duration {
		v := slices.Clone(res[k])
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		return v[len(v)/2]
	}
	fmt.Println()
	for _, k := range []string{"engine_mutate", "compose_mutate", "floor_mutate", "engine_deploy", "compose_deploy", "floor_deploy"} {
		fmt.Printf("median %-15s %8.3fs (n=%d)\n", k, med(k).Seconds(), len(res[k]))
	}
	ratio := func(a, b string) float64 { return med(a).Seconds() / med(b).Seconds() }
	fmt.Printf("mutate: engine/compose = %.2f (goal <= 0.5), engine/floor = %.2f (goal <= 1.3)\n",
		ratio("engine_mutate", "compose_mutate"), ratio("engine_mutate", "floor_mutate"))
	fmt.Printf("deploy: engine/compose = %.2f (goal <= 0.5), engine/floor = %.2f\n",
		ratio("engine_deploy", "compose_deploy"), ratio("engine_deploy", "floor_deploy"))
	return nil
}

func composeCLI() ([]string, error) {
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err == nil && bytes.Contains(out, []byte("version")) {
		return []string{"docker", "compose"}, nil
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}, nil
	}
	return nil, errors.New("neither `docker compose` nor docker-compose is installed (apt-get install docker-compose)")
}

// fleet returns the config of run r of a contender (names unique per run and
// contender; "f", the floor, uses the engine's subnet).
func (b *bench) fleet(tag string, r int) decnet.Config {
	sub := tag
	if sub == "f" {
		sub = "e"
	}
	n := b.subnets[sub]
	n.Name = fmt.Sprintf("dnt-bench-%s-%s%d", b.prefix, tag, r)
	cfg := decnet.Config{Mode: decnet.ModeUnihost, Network: n}
	for i := range b.deckies {
		cfg.Deckies = append(cfg.Deckies, decnet.Decky{
			Name:     fmt.Sprintf("%s-%s%d-%02d", b.prefix, tag, r, i),
			IP:       dockertest.Addr(n.Subnet, 10+i),
			Services: slices.Clone(setA),
		})
	}
	return cfg
}

func (b *bench) project(tag string, r int) string {
	p := fmt.Sprintf("dnt-bench-%s-%s%d", b.prefix, tag, r)
	b.projects = append(b.projects, p)
	return p
}

func (b *bench) cleanupAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, p := range b.projects {
		if err := b.admin.RemoveProject(ctx, p); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", p, err)
		}
	}
	b.projects = nil
}

func (b *bench) remove(p string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return b.admin.RemoveProject(ctx, p)
}

func next(cur []string) []string {
	if slices.Equal(cur, setA) {
		return slices.Clone(setB)
	}
	return slices.Clone(setA)
}

// contender is one fleet, driven by the engine or by the compose CLI (which
// reads the file the engine renders: the same labels, hashes and names).
type contender struct {
	b       *bench
	eng     *engine.Engine
	cfg     decnet.Config
	project string
	file    string
	cli     bool
}

func (b *bench) newContender(tag string, r int, cli bool) (*contender, error) {
	project := b.project(tag, r)
	file := filepath.Join(b.dir, project+".yml")
	eng, err := engine.New(engine.Config{Project: project, Catalog: b.cat, BaseImage: b.img.Pause,
		Concurrency: b.conc, WorkDir: b.dir, ComposeFile: file})
	if err != nil {
		return nil, err
	}
	return &contender{b: b, eng: eng, cfg: b.fleet(tag, r), project: project, file: file, cli: cli}, nil
}

func (c *contender) close() { _ = c.eng.Close() }

func (c *contender) apply(ctx context.Context, decky string) error {
	if !c.cli {
		if decky == "" {
			return c.eng.Apply(ctx, c.cfg)
		}
		return c.eng.ApplyDecky(ctx, c.cfg, decky)
	}
	y, err := c.eng.Render(c.cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.file, y, 0o600); err != nil {
		return err
	}
	cli := c.b.compose
	args := append(slices.Clone(cli[1:]), "-p", c.project, "-f", c.file, "up", "-d", "--remove-orphans")
	out, err := exec.CommandContext(ctx, cli[0], args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", cli[0], strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *contender) deploy(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	if err := c.apply(ctx, ""); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	return d, checkRunning(ctx, c.eng, c.cfg)
}

func (c *contender) mutate(ctx context.Context) (time.Duration, error) {
	c.cfg.Deckies[0].Services = next(c.cfg.Deckies[0].Services)
	t0 := time.Now()
	if err := c.apply(ctx, c.cfg.Deckies[0].Name); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func checkRunning(ctx context.Context, eng *engine.Engine, cfg decnet.Config) error {
	st, err := eng.Status(ctx, cfg)
	if err != nil {
		return err
	}
	for _, s := range st {
		if !s.Running {
			return fmt.Errorf("decky %s not running: %v", s.Name, s.Containers)
		}
	}
	return nil
}

func (b *bench) floorDeploy(ctx context.Context, r int) (time.Duration, error) {
	project := b.project("f", r)
	cfg := b.fleet("f", r)
	t0 := time.Now()
	if err := b.floor.createNetwork(ctx, project, cfg.Network); err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(cfg.Deckies))
	for i, d := range cfg.Deckies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.floor.run(ctx, b.floor.baseSpec(project, b.img, cfg.Network, d)); err != nil {
				errs[i] = err
				return
			}
			var inner sync.WaitGroup
			serr := make([]error, len(d.Services))
			for j, s := range d.Services {
				inner.Add(1)
				go func() {
					defer inner.Done()
					svc, _ := b.cat.Lookup(s) // the fleet holds only catalog services
					serr[j] = b.floor.run(ctx, b.floor.serviceSpec(project, svc, d.Name))
				}()
			}
			inner.Wait()
			errs[i] = errors.Join(serr...)
		}()
	}
	wg.Wait()
	d := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return d, b.remove(project)
}

// floorClient speaks the Engine API over HTTP directly: the least work a
// client can ask of the daemon.
type floorClient struct {
	hc   *http.Client
	tr   *http.Transport
	base string
}

func newFloor(host string) *floorClient {
	sock := strings.TrimPrefix(host, "unix://")
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 32,
	}
	return &floorClient{hc: &http.Client{Transport: tr}, tr: tr, base: "http://docker/v1.41"}
}

func (f *floorClient) close() { f.tr.CloseIdleConnections() }

type spec struct {
	name string
	body map[string]any
}

func (f *floorClient) call(ctx context.Context, method, path string, body any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, f.base+path, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10)) // an error message, or a create's ID
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
	}
	return nil
}

func (f *floorClient) run(ctx context.Context, s spec) error {
	if err := f.call(ctx, http.MethodPost, "/containers/create?name="+url.QueryEscape(s.name), s.body); err != nil {
		return err
	}
	return f.call(ctx, http.MethodPost, "/containers/"+s.name+"/start", nil)
}

func (f *floorClient) removeC(ctx context.Context, name string) error {
	return f.call(ctx, http.MethodDelete, "/containers/"+name+"?force=1", nil)
}

func (f *floorClient) createNetwork(ctx context.Context, project string, n decnet.Network) error {
	return f.call(ctx, http.MethodPost, "/networks/create", map[string]any{
		"Name": n.Name, "Driver": "bridge", "CheckDuplicate": true,
		"IPAM":   map[string]any{"Config": []map[string]string{{"Subnet": n.Subnet.String(), "Gateway": n.Gateway.String()}}},
		"Labels": map[string]string{compose.ComposeProject: project},
	})
}

func labels(project, decky, svc string) map[string]string {
	return map[string]string{compose.ComposeProject: project, compose.LabelManaged: "true",
		compose.LabelDecky: decky, compose.LabelService: svc}
}

// The floor's containers are the engine's: same sysctls, logging, restart
// policy and capabilities, so only the client's overhead differs.
func sysctls() map[string]string {
	p, _ := decnet.SysctlProfile(decnet.OSLinux)
	return p
}

func logConfig() map[string]any {
	return map[string]any{"Type": compose.LogDriver, "Config": map[string]string{"max-size": compose.LogMaxSize, "max-file": compose.LogMaxFile}}
}

func (f *floorClient) baseSpec(project string, img dockertest.ImageSet, n decnet.Network, d decnet.Decky) spec {
	return spec{name: d.Name, body: map[string]any{
		"Image": img.Pause, "Hostname": d.EffectiveHostname(), "Labels": labels(project, d.Name, compose.BaseService),
		"HostConfig": map[string]any{"NetworkMode": n.Name, "CapAdd": []string{"CAP_NET_ADMIN"},
			"RestartPolicy": map[string]string{"Name": "unless-stopped"}, "Sysctls": sysctls(), "LogConfig": logConfig()},
		"NetworkingConfig": map[string]any{"EndpointsConfig": map[string]any{
			n.Name: map[string]any{"IPAMConfig": map[string]string{"IPv4Address": d.IP.String()}}}},
	}}
}

func (f *floorClient) serviceSpec(project string, svc decnet.Service, decky string) spec {
	return spec{name: compose.ContainerName(decky, svc.Name), body: map[string]any{
		"Image": svc.Image, "Cmd": svc.Command, "Labels": labels(project, decky, svc.Name),
		"Env": []string{"DECOY_PORTS=" + svc.Env["DECOY_PORTS"], "NODE_NAME=" + decky, "HOSTNAME=" + decky},
		"HostConfig": map[string]any{"NetworkMode": "container:" + decky,
			"RestartPolicy": map[string]string{"Name": "unless-stopped"}, "LogConfig": logConfig()},
	}}
}

// mutate removes the services of from that to lacks, then creates and
// starts those to adds, each group concurrently.
func (f *floorClient) mutate(ctx context.Context, project string, cat *decnet.Catalog, decky string, from, to []string) error {
	plan := decnet.PlanMutation(from, to)
	each := func(names []string, fn func(string) error) error {
		var wg sync.WaitGroup
		errs := make([]error, len(names))
		for i, n := range names {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = fn(n) }()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	if err := each(plan.Remove, func(s string) error { return f.removeC(ctx, compose.ContainerName(decky, s)) }); err != nil {
		return err
	}
	return each(plan.Add, func(s string) error {
		svc, _ := cat.Lookup(s)
		return f.run(ctx, f.serviceSpec(project, svc, decky))
	})
}
