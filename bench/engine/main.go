// Command engine benchmarks decnet's engine against the compose CLI and
// against the floor of bare Engine API calls, on the local Docker daemon:
//
//	go run ./bench/engine [-deckies 20] [-runs 3] [-mutations 7]
//
// Scenarios, each timed in the same run, interleaved:
//   - deploy: N deckies × 3 services (ssh, http, ftp) from nothing;
//   - mutate: one decky of the deployed fleet swaps 2 of its 3 services
//     ({ssh,http,ftp} ↔ {ssh,smtp,telnet}).
//
// For each: (a) engine.Apply / engine.ApplyDecky; (b) `docker-compose -p P
// -f <file rendered by package compose> up -d --remove-orphans` (or `docker
// compose` when the plugin exists); (c) the floor: raw HTTP calls to the
// Engine API over the socket for just the containers that change (deploy:
// create+start every container, services after their base, all deckies at
// once; mutate: remove the 2 old services, then create+start the 2 new, each
// pair concurrently). Images are built locally from internal/testdecoy;
// everything created is removed at the end. The last lines print medians and
// ratios.
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
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
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
	net      decnet.Network
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
	runs := flag.Int("runs", 3, "deploy runs per contender")
	mutations := flag.Int("mutations", 7, "mutations per contender")
	conc := flag.Int("concurrency", 0, "engine Concurrency (0 = the engine's default)")
	flag.Parse()

	ctx := context.Background()
	b := &bench{deckies: *deckies, conc: *conc}
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
	subnet, release, err := dockertest.ReserveSubnet(ctx, b.admin)
	if err != nil {
		return err
	}
	defer release()
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
	b.cat = catalog(b.img)
	b.prefix = fmt.Sprintf("bn%d", os.Getpid()%100000)
	b.net = decnet.Network{Driver: decnet.DriverBridge, Subnet: subnet, Gateway: dockertest.Addr(subnet, 1),
		Name: "dnt-bench-" + b.prefix}
	b.floor = newFloor(engine.DefaultHost)
	defer b.floor.close()
	defer b.cleanupAll()

	fmt.Printf("bench/engine: %d deckies × 3 services, %d deploy runs, %d mutations, compose CLI %q\n",
		b.deckies, *runs, *mutations, strings.Join(b.compose, " "))
	res := map[string][]time.Duration{}
	add := func(k string, d time.Duration) {
		res[k] = append(res[k], d)
		fmt.Printf("  %-16s %8.3fs\n", k, d.Seconds())
	}
	for r := range *runs {
		// (a) engine
		d, err := b.engineRun(ctx, r, *mutations, add)
		if err != nil {
			return fmt.Errorf("engine run %d: %w", r, err)
		}
		add("engine_deploy", d)
		// (b) compose CLI
		d, err = b.composeRun(ctx, r, *mutations, add)
		if err != nil {
			return fmt.Errorf("compose run %d: %w", r, err)
		}
		add("compose_deploy", d)
		// (c) floor
		d, err = b.floorDeploy(ctx, r)
		if err != nil {
			return fmt.Errorf("floor run %d: %w", r, err)
		}
		add("floor_deploy", d)
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

func catalog(img dockertest.ImageSet) *decnet.Catalog {
	def := decnet.DefaultCatalog()
	var svcs []decnet.Service
	for _, n := range []string{"ssh", "http", "ftp", "smtp", "telnet"} {
		s, _ := def.Lookup(n)
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprint(p.Port))
		}
		svcs = append(svcs, decnet.Service{Name: n, Image: img.Decoy, Command: []string{n}, Ports: s.Ports,
			Env: map[string]string{"DECOY_PORTS": strings.Join(ports, ",")}})
	}
	c, err := decnet.NewCatalog(svcs...)
	if err != nil {
		panic(err)
	}
	return c
}

// fleet returns the config of run r (names unique per run and contender).
func (b *bench) fleet(tag string, r int) decnet.Config {
	cfg := decnet.Config{Mode: decnet.ModeUnihost, Network: b.net}
	for i := range b.deckies {
		cfg.Deckies = append(cfg.Deckies, decnet.Decky{
			Name:     fmt.Sprintf("%s-%s%d-%02d", b.prefix, tag, r, i),
			IP:       dockertest.Addr(b.net.Subnet, 10+i),
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

func (b *bench) engineRun(ctx context.Context, r, mutations int, add func(string, time.Duration)) (time.Duration, error) {
	project := b.project("e", r)
	eng, err := engine.New(engine.Config{Project: project, Catalog: b.cat, BaseImage: b.img.Pause, Concurrency: b.conc})
	if err != nil {
		return 0, err
	}
	defer eng.Close()
	cfg := b.fleet("e", r)
	t0 := time.Now()
	if err := eng.Apply(ctx, cfg); err != nil {
		return 0, err
	}
	deploy := time.Since(t0)
	if err := checkRunning(ctx, eng, cfg); err != nil {
		return 0, err
	}
	// Mutations: the engine first, then the floor on the same fleet.
	if r == 0 {
		d0 := cfg.Deckies[0].Name
		for range mutations {
			cfg.Deckies[0].Services = next(cfg.Deckies[0].Services)
			t0 := time.Now()
			if err := eng.ApplyDecky(ctx, cfg, d0); err != nil {
				return 0, err
			}
			add("engine_mutate", time.Since(t0))
		}
		if err := checkRunning(ctx, eng, cfg); err != nil {
			return 0, err
		}
		cur := cfg.Deckies[0].Services
		for range mutations {
			to := next(cur)
			t0 := time.Now()
			if err := b.floor.mutate(ctx, project, b.img, d0, cur, to); err != nil {
				return 0, err
			}
			add("floor_mutate", time.Since(t0))
			cur = to
		}
		cfg.Deckies[0].Services = cur
		if st, err := eng.Status(ctx, cfg); err != nil || !st[0].Running {
			return 0, fmt.Errorf("floor mutation left decky %s not running: %+v %v", d0, st, err)
		}
	}
	return deploy, b.remove(project)
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

func (b *bench) composeRun(ctx context.Context, r, mutations int, add func(string, time.Duration)) (time.Duration, error) {
	project := b.project("c", r)
	file := filepath.Join(b.dir, project+".yml")
	cfg := b.fleet("c", r)
	// The engine renders the file (same labels and hashes as it would create).
	eng, err := engine.New(engine.Config{Project: project, Catalog: b.cat, BaseImage: b.img.Pause, WorkDir: b.dir, ComposeFile: file})
	if err != nil {
		return 0, err
	}
	defer eng.Close()
	up := func() error {
		y, err := eng.Render(cfg)
		if err != nil {
			return err
		}
		if err := os.WriteFile(file, y, 0o600); err != nil {
			return err
		}
		args := append(slices.Clone(b.compose[1:]), "-p", project, "-f", file, "up", "-d", "--remove-orphans")
		out, err := exec.CommandContext(ctx, b.compose[0], args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v\n%s", b.compose[0], strings.Join(args, " "), err, out)
		}
		return nil
	}
	t0 := time.Now()
	if err := up(); err != nil {
		return 0, err
	}
	deploy := time.Since(t0)
	if err := checkRunning(ctx, eng, cfg); err != nil {
		return 0, err
	}
	if r == 0 {
		for range mutations {
			cfg.Deckies[0].Services = next(cfg.Deckies[0].Services)
			t0 := time.Now()
			if err := up(); err != nil {
				return 0, err
			}
			add("compose_mutate", time.Since(t0))
		}
		if err := checkRunning(ctx, eng, cfg); err != nil {
			return 0, err
		}
	}
	return deploy, b.remove(project)
}

func (b *bench) floorDeploy(ctx context.Context, r int) (time.Duration, error) {
	project := b.project("f", r)
	cfg := b.fleet("f", r)
	// The network is not part of the floor (every contender's network
	// creation is included in its own time, but it is one call).
	t0 := time.Now()
	if err := b.floor.createNetwork(ctx, project, b.net); err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(cfg.Deckies))
	for i, d := range cfg.Deckies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.floor.run(ctx, b.floor.baseSpec(project, b.img, b.net, d)); err != nil {
				errs[i] = err
				return
			}
			var inner sync.WaitGroup
			serr := make([]error, len(d.Services))
			for j, s := range d.Services {
				inner.Add(1)
				go func() {
					defer inner.Done()
					serr[j] = b.floor.run(ctx, b.floor.serviceSpec(project, b.img, d.Name, s))
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
	msg, _ := io.ReadAll(resp.Body)
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

func (f *floorClient) serviceSpec(project string, img dockertest.ImageSet, decky, svc string) spec {
	def, _ := decnet.DefaultCatalog().Lookup(svc)
	var ports []string
	for _, p := range def.Ports {
		ports = append(ports, fmt.Sprint(p.Port))
	}
	return spec{name: compose.ContainerName(decky, svc), body: map[string]any{
		"Image": img.Decoy, "Cmd": []string{svc}, "Labels": labels(project, decky, svc),
		"Env": []string{"DECOY_PORTS=" + strings.Join(ports, ","), "NODE_NAME=" + decky, "HOSTNAME=" + decky},
		"HostConfig": map[string]any{"NetworkMode": "container:" + decky,
			"RestartPolicy": map[string]string{"Name": "unless-stopped"}, "LogConfig": logConfig()},
	}}
}

// mutate removes the services of from that to lacks, then creates and
// starts those to adds, each group concurrently.
func (f *floorClient) mutate(ctx context.Context, project string, img dockertest.ImageSet, decky string, from, to []string) error {
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
	return each(plan.Add, func(s string) error { return f.run(ctx, f.serviceSpec(project, img, decky, s)) })
}
