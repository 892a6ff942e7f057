// Package repotest is the conformance suite every repository.Repository
// implementation passes. A backend's test calls Run with a function that
// opens a fresh, empty repository for one test:
//
//	func TestConformance(t *testing.T) {
//		repotest.Run(t, func(t *testing.T) repository.Repository {
//			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Every behaviour is a subtest (run in parallel, each on its own
// repository): CRUD and its error classes, boundary rejections that write
// nothing, optimistic versions, the due-time queries, single-use tokens,
// the event log and its cursor, concurrency (no lost update, exactly one
// token winner) and a model-based property test (pgregory.net/rapid).
//
// open is called once per subtest and must return an independent, empty
// repository each time; it registers its own cleanup (t.Cleanup).
package repotest
