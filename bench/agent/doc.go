// Package agentbench benchmarks the master→agent path: one agentclient
// talking to one in-process agent over real mutual TLS on loopback, with the
// agent's in-memory fake engine (no Docker work), so the figures measure the
// API, TLS and the state lock.
//
//	go test -run '^$' -bench . -benchtime 3s ./bench/agent
//
// Each benchmark reports requests per second and the TLS handshakes the
// agent counted (server side): connection reuse keeps handshakes at the
// number of connections, not the number of requests.
package agentbench
