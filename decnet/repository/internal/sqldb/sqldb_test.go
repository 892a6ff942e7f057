package sqldb

import (
	"testing"
	"testing/fstest"
)

func TestLoadMigrations(t *testing.T) {
	ok := fstest.MapFS{
		"m/0002_second.sql": {Data: []byte("B")},
		"m/0001_first.sql":  {Data: []byte("A")},
		"m/README":          {Data: []byte("ignored")},
	}
	ms, err := LoadMigrations(ok, "m")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Version != 1 || ms[0].Name != "first" || ms[1].SQL != "B" {
		t.Fatalf("migrations: %+v", ms)
	}
	for what, fsys := range map[string]fstest.MapFS{
		"gap":      {"m/0001_a.sql": {}, "m/0003_c.sql": {}},
		"no name":  {"m/0001.sql": {}},
		"bad num":  {"m/x_a.sql": {}},
		"zero":     {"m/0000_a.sql": {}},
		"no dir":   {},
		"starts 2": {"m/0002_b.sql": {}},
	} {
		if _, err := LoadMigrations(fsys, "m"); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
}

func TestNumberedPlaceholders(t *testing.T) {
	d := &Dialect{Numbered: true}
	if got := d.q(`SELECT a FROM t WHERE b = ? AND c IN (?, ?)`); got != `SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)` {
		t.Fatalf("rebind: %s", got)
	}
	if got := (&Dialect{}).q(`x = ?`); got != `x = ?` {
		t.Fatalf("unnumbered dialect rewrote: %s", got)
	}
	if got := values(2, 3); got != `(?, ?, ?), (?, ?, ?)` {
		t.Fatalf("values: %s", got)
	}
}
