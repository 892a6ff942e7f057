package agentclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/pki"
)

// Timeouts and limits used when the matching option is not given.
const (
	// DefaultControlTimeout bounds Health, Status and SelfDestruct.
	DefaultControlTimeout = 15 * time.Second
	// DefaultDeployTimeout bounds Deploy, Mutate and Teardown.
	DefaultDeployTimeout = 10 * time.Minute
	// DefaultMaxResponseBytes caps the size of a response body the client reads.
	DefaultMaxResponseBytes = 16 << 20
)

// Credentials is the identity the client presents: the master's bundle
// (certificate, private key and the swarm CA that also signs the workers).
type Credentials struct {
	Bundle *pki.Bundle
}

// RetryPolicy says how transient failures of idempotent calls are retried.
type RetryPolicy struct {
	// Max is the number of retries after the first attempt; 0 disables retries.
	Max int
	// WaitMin and WaitMax bound the exponential backoff between attempts.
	WaitMin, WaitMax time.Duration
}

// DefaultRetryPolicy returns the policy used when WithRetry is not given:
// 3 retries, backing off from 250 ms to 4 s.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Max: 3, WaitMin: 250 * time.Millisecond, WaitMax: 4 * time.Second}
}

// Option configures a Client.
type Option func(*options)

type options struct {
	fingerprint     *string // nil: WithFingerprint not given
	logger          *slog.Logger
	retry           RetryPolicy
	controlTimeout  time.Duration
	deployTimeout   time.Duration
	httpClient      *http.Client
	maxResponseSize int64
}

// WithFingerprint pins the worker's certificate: the handshake fails with
// decnet.ErrFingerprintMismatch unless the worker presents the certificate
// whose SHA-256 (of the DER) is fp (any form pki.ParseFingerprint accepts).
// An empty or malformed fp makes New fail with decnet.ErrInvalid rather than
// leave the worker unpinned. Without this option the worker is verified
// against the CA and its role only.
func WithFingerprint(fp string) Option { return func(o *options) { o.fingerprint = &fp } }

// WithLogger sets the logger (nil discards). Request URLs are logged, bodies never.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRetry replaces the retry policy.
func WithRetry(p RetryPolicy) Option { return func(o *options) { o.retry = p } }

// WithTimeouts sets the control-call timeout (Health, Status, SelfDestruct)
// and the deploy timeout (Deploy, Mutate, Teardown); a zero value keeps the
// default.
func WithTimeouts(control, deploy time.Duration) Option {
	return func(o *options) {
		if control > 0 {
			o.controlTimeout = control
		}
		if deploy > 0 {
			o.deployTimeout = deploy
		}
	}
}

// WithHTTPClient makes the client send its requests through hc instead of
// the mTLS client it would build from the credentials. hc must carry its own
// TLS configuration and pinning: New refuses WithHTTPClient together with
// WithFingerprint (the pin could not be enforced). Handshakes then always
// reports 0.
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.httpClient = hc } }

// WithMaxResponseBytes caps the response body size (default DefaultMaxResponseBytes).
func WithMaxResponseBytes(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.maxResponseSize = n
		}
	}
}

// Client calls one worker agent. It is safe for concurrent use; connections
// are reused across calls.
type Client struct {
	base       *url.URL
	rc         *retryablehttp.Client
	hc         *http.Client
	log        *slog.Logger
	control    time.Duration
	deploy     time.Duration
	maxResp    int64
	handshakes atomic.Int64
}

// New returns a client for the agent at addr ("host:port" or
// "https://host:port"). creds.Bundle is required unless WithHTTPClient is given.
func New(addr string, creds Credentials, opts ...Option) (*Client, error) {
	o := options{
		retry:           DefaultRetryPolicy(),
		controlTimeout:  DefaultControlTimeout,
		deployTimeout:   DefaultDeployTimeout,
		maxResponseSize: DefaultMaxResponseBytes,
	}
	for _, opt := range opts {
		opt(&o)
	}
	base, err := parseAddr(addr)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:    base,
		log:     o.logger,
		control: o.controlTimeout,
		deploy:  o.deployTimeout,
		maxResp: o.maxResponseSize,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if o.httpClient != nil {
		if o.fingerprint != nil {
			return nil, decnet.Errorf(decnet.ErrInvalid, "fingerprint", "", "agentclient: WithFingerprint cannot be enforced on a client given WithHTTPClient")
		}
		c.hc = o.httpClient
	} else {
		if creds.Bundle == nil {
			return nil, decnet.Errorf(decnet.ErrInvalid, "credentials", "", "agentclient: credentials need the master's bundle")
		}
		expect := pki.ExpectPeer{Role: pki.RoleWorker}
		if o.fingerprint != nil {
			fp, err := pki.ParseFingerprint(*o.fingerprint)
			if err != nil {
				return nil, fmt.Errorf("agentclient: worker fingerprint: %w", err)
			}
			expect.Fingerprint = fp
		}
		tlsCfg, err := pki.ClientTLSConfig(creds.Bundle, expect)
		if err != nil {
			return nil, fmt.Errorf("agentclient: tls config: %w", err)
		}
		inner := tlsCfg.VerifyConnection
		tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
			c.handshakes.Add(1)
			if inner != nil {
				return inner(cs)
			}
			return nil
		}
		dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		tr := &http.Transport{
			DialContext:           dialer.DialContext,
			TLSClientConfig:       tlsCfg,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   10 * time.Second,
			MaxIdleConns:          128,
			MaxIdleConnsPerHost:   128,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
		c.hc = &http.Client{
			Transport: tr,
			// The agent never redirects; following one would leave the pinned peer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	c.rc = &retryablehttp.Client{
		HTTPClient:   c.hc,
		Logger:       leveledLogger{c.log},
		RetryWaitMin: o.retry.WaitMin,
		RetryWaitMax: o.retry.WaitMax,
		RetryMax:     max(o.retry.Max, 0),
		CheckRetry:   checkRetry,
		Backoff:      retryablehttp.DefaultBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	return c, nil
}

func parseAddr(addr string) (*url.URL, error) {
	if addr == "" {
		return nil, decnet.Errorf(decnet.ErrInvalid, "address", "", "agentclient: empty agent address")
	}
	raw := addr
	if !strings.Contains(addr, "://") {
		raw = "https://" + addr
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, decnet.Errorf(decnet.ErrInvalid, "address", addr, "agentclient: invalid agent address %q", addr)
	}
	if u.Scheme != "https" {
		return nil, decnet.Errorf(decnet.ErrInvalid, "address", addr, "agentclient: agent address %q must use https", addr)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return nil, decnet.Errorf(decnet.ErrInvalid, "address", addr, "agentclient: agent address %q must be host:port", addr)
	}
	return &url.URL{Scheme: "https", Host: u.Host}, nil
}

// Handshakes returns how many TLS handshakes the client has performed (each
// new connection is one). With connection reuse it stays at the number of
// connections, not the number of requests.
func (c *Client) Handshakes() int64 { return c.handshakes.Load() }

// Close releases idle connections. The client stays usable.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Health returns the agent's version and protocol.
func (c *Client) Health(ctx context.Context) (decnet.HealthResponse, error) {
	var out decnet.HealthResponse
	err := c.call(ctx, http.MethodGet, "/health", nil, c.control, retryIdempotent, &out)
	return out, err
}

// Status returns the worker's deckies and the state of their containers.
func (c *Client) Status(ctx context.Context) (decnet.StatusResponse, error) {
	var out decnet.StatusResponse
	err := c.call(ctx, http.MethodGet, "/status", nil, c.control, retryIdempotent, &out)
	return out, err
}

// DeployOptions modifies a Deploy call.
type DeployOptions struct {
	// DryRun returns the plan and changes nothing on the worker.
	DryRun bool
}

// DeployResult is the outcome of a Deploy.
type DeployResult struct {
	// DryRun is true when the result is a plan and nothing changed.
	DryRun bool
	// Deckies names the deckies now deployed (empty for a dry run).
	Deckies []string
	// Plan is set for a dry run.
	Plan *decnet.DeployPlan
}

// Deploy replaces the worker's desired state with cfg (the worker's whole
// shard) and applies it. A partial failure is a *decnet.WireError that
// unwraps to decnet.ErrApplyFailed, with per-decky errors in
// Details["deckies"].
func (c *Client) Deploy(ctx context.Context, cfg decnet.Config, opts DeployOptions) (DeployResult, error) {
	body, err := json.Marshal(decnet.DeployRequest{Config: cfg, DryRun: opts.DryRun})
	if err != nil {
		return DeployResult{}, fmt.Errorf("agentclient: encode deploy: %w", err)
	}
	var out decnet.DeployResponse
	if err := c.call(ctx, http.MethodPost, "/deploy", body, c.deploy, retryIdempotent, &out); err != nil {
		return DeployResult{}, err
	}
	return DeployResult{DryRun: out.Status == "dry_run", Deckies: out.Deckies, Plan: out.Plan}, nil
}

// Teardown removes one decky (base and services) from the worker, or every
// decky and the network when deckyID is empty.
func (c *Client) Teardown(ctx context.Context, deckyID string) error {
	if deckyID != "" && !decnet.ValidDeckyName(deckyID) {
		return decnet.Errorf(decnet.ErrInvalid, "decky", deckyID, "invalid decky name %q", deckyID)
	}
	body, err := json.Marshal(decnet.TeardownRequest{DeckyID: deckyID})
	if err != nil {
		return fmt.Errorf("agentclient: encode teardown: %w", err)
	}
	var out decnet.TeardownResponse
	// The deploy timeout, not the control one: removing containers can take
	// long, and a teardown reported failed while the worker finishes it
	// leaves the master believing the decky still exists.
	return c.call(ctx, http.MethodPost, "/teardown", body, c.deploy, retryIdempotent, &out)
}

// MutateOptions modifies a Mutate call.
type MutateOptions struct {
	// DryRun returns the add/remove/keep plan and changes nothing.
	DryRun bool
}

// MutateResult is the outcome of a Mutate.
type MutateResult struct {
	DeckyID  string
	Services []string
	// DryRun is true when nothing changed and Plan says what would.
	DryRun bool
	Plan   *decnet.MutatePlan
}

// Mutate replaces the services of decky deckyID. The services are checked
// for form (non-empty, valid names, no duplicates) before anything is sent;
// the agent checks them against its catalog.
func (c *Client) Mutate(ctx context.Context, deckyID string, services []string, opts MutateOptions) (MutateResult, error) {
	if !decnet.ValidDeckyName(deckyID) {
		return MutateResult{}, decnet.Errorf(decnet.ErrInvalid, "decky", deckyID, "invalid decky name %q", deckyID)
	}
	if err := decnet.ValidateServices("services", services, nil); err != nil {
		return MutateResult{}, err
	}
	body, err := json.Marshal(decnet.MutateRequest{DeckyID: deckyID, Services: services, DryRun: opts.DryRun})
	if err != nil {
		return MutateResult{}, fmt.Errorf("agentclient: encode mutate: %w", err)
	}
	var out decnet.MutateResponse
	if err := c.call(ctx, http.MethodPost, "/mutate", body, c.deploy, retryIdempotent, &out); err != nil {
		return MutateResult{}, err
	}
	return MutateResult{DeckyID: out.DeckyID, Services: out.Services, DryRun: out.Status == "dry_run", Plan: out.Plan}, nil
}

// SelfDestruct asks the worker to tear everything down and wipe its install.
// The agent answers before the reaper starts; a nil error means the reaper
// was scheduled.
func (c *Client) SelfDestruct(ctx context.Context) error {
	var out decnet.SelfDestructResponse
	return c.call(ctx, http.MethodPost, "/self-destruct", nil, c.control, retryDialOnly, &out)
}

type retryMode int

const (
	retryIdempotent retryMode = iota + 1
	retryDialOnly
)

type retryModeKey struct{}

func (c *Client) call(ctx context.Context, method, path string, body []byte, timeout time.Duration, mode retryMode, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = context.WithValue(ctx, retryModeKey{}, mode)
	var raw any // a nil []byte would still count as a body
	if body != nil {
		raw = body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, c.base.JoinPath(path).String(), raw)
	if err != nil {
		return fmt.Errorf("agentclient: build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.rc.Do(req)
	if err != nil {
		return transportError(method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxResp+1))
	if err != nil {
		return fmt.Errorf("agentclient: %s %s: read response: %w: %w", method, path, decnet.ErrUnavailable, err)
	}
	if int64(len(data)) > c.maxResp {
		return fmt.Errorf("agentclient: %s %s: response larger than %d bytes: %w", method, path, c.maxResp, decnet.ErrUnavailable)
	}
	if resp.StatusCode >= 300 {
		return wireError(resp.StatusCode, data)
	}
	if err := decnet.DecodeLenient(data, out); err != nil {
		return fmt.Errorf("agentclient: %s %s: %w: %w", method, path, decnet.ErrUnavailable, err)
	}
	return nil
}

// wireError decodes an error response. A body that is not the decnet error
// envelope (a proxy's page, say) still maps to a class by its status.
func wireError(status int, data []byte) error {
	var body decnet.WireBody
	_ = json.Unmarshal(data, &body)
	we := body.Error
	we.Status = status
	if we.Code == "" {
		we.Code = codeForStatus(status)
	}
	if we.Message == "" {
		we.Message = fmt.Sprintf("agent answered %d %s", status, http.StatusText(status))
	}
	return &we
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return decnet.CodeInvalid
	case http.StatusUnauthorized:
		return decnet.CodeUnauthorized
	case http.StatusForbidden:
		return decnet.CodeForbidden
	case http.StatusNotFound:
		return decnet.CodeNotFound
	case http.StatusMethodNotAllowed:
		return decnet.CodeMethodNotAllowed
	case http.StatusConflict:
		return decnet.CodeConflict
	case http.StatusRequestEntityTooLarge:
		return decnet.CodeTooLarge
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return decnet.CodeUnavailable
	}
	return decnet.CodeInternal
}

// transportError classifies an error that produced no response: a
// certificate the client refused or that refused the client is
// ErrUnauthorized (or ErrFingerprintMismatch, which pki's verifier already
// wraps); anything else is ErrUnavailable.
func transportError(method, path string, err error) error {
	switch {
	case errors.Is(err, decnet.ErrFingerprintMismatch), errors.Is(err, decnet.ErrUnauthorized):
		return fmt.Errorf("agentclient: %s %s: %w", method, path, err)
	case isTLSFailure(err):
		return fmt.Errorf("agentclient: %s %s: %w: %w", method, path, decnet.ErrUnauthorized, err)
	}
	return fmt.Errorf("agentclient: %s %s: %w: %w", method, path, decnet.ErrUnavailable, err)
}

// isTLSFailure reports whether err comes from certificate verification or a
// TLS alert, on either side.
func isTLSFailure(err error) bool {
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return true
	}
	if _, ok := errors.AsType[tls.AlertError](err); ok {
		return true
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*tls.ECHRejectionError](err); ok {
		return true
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" {
		return true // an alert from the peer, such as a refused client certificate
	}
	return false
}

// checkRetry is the retryablehttp policy: never retry TLS or certificate
// failures, a cancelled context, or any response the agent produced (4xx,
// 500); retry transient transport failures and 429/502/503/504 for
// idempotent calls, and only dial failures for the others.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	mode, _ := ctx.Value(retryModeKey{}).(retryMode)
	if err != nil {
		if errors.Is(err, decnet.ErrFingerprintMismatch) || errors.Is(err, decnet.ErrUnauthorized) || isTLSFailure(err) {
			return false, nil
		}
		if mode == retryDialOnly {
			op, ok := errors.AsType[*net.OpError](err)
			return ok && op.Op == "dial", nil
		}
		return mode == retryIdempotent, nil
	}
	if mode != retryIdempotent {
		return false, nil
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, nil
	}
	return false, nil
}

// leveledLogger adapts *slog.Logger to retryablehttp.LeveledLogger.
type leveledLogger struct{ l *slog.Logger }

func (a leveledLogger) Error(msg string, kv ...any) { a.l.Error(msg, kv...) }
func (a leveledLogger) Info(msg string, kv ...any)  { a.l.Info(msg, kv...) }
func (a leveledLogger) Debug(msg string, kv ...any) { a.l.Debug(msg, kv...) }
func (a leveledLogger) Warn(msg string, kv ...any)  { a.l.Warn(msg, kv...) }

var _ retryablehttp.LeveledLogger = leveledLogger{}
