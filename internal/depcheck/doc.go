// Package depcheck holds no code: its test enforces the dependency rules of
// the design (which packages may import Docker, database drivers, D-Bus, and
// each other) by asking `go list` about the real module.
package depcheck
