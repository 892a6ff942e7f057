// Package mutatorbench benchmarks one mutation round of the mutator engine
// over 1,000 deckies on 100 in-process agents (real mTLS on loopback, an
// engine that does no Docker work):
//
//	go test -run '^$' -bench Round -benchtime 10x ./bench/mutator
//
// It reports the time per round and the TLS handshakes the agents completed
// per agent per round (counted server-side), for the cold round (clients
// connecting) and the measured ones.
package mutatorbench
