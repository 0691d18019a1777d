package pipelines

import (
	"os"
	"testing"
)

// TestPostgres runs engine tests on PostgreSQL when INFERGATE_TEST_POSTGRES
// names an empty database (make test-postgres sets it): the engine's SQL
// is the same on both stores.
func TestPostgres(t *testing.T) {
	dsn := os.Getenv("INFERGATE_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("INFERGATE_TEST_POSTGRES is not set: the PostgreSQL store tests are skipped (make test-postgres runs them)")
	}
	pgDSN = dsn
	defer func() { pgDSN = "" }()
	for name, test := range map[string]func(*testing.T){
		"DAG":         TestDAGPassesData,
		"Retry":       TestRetryBackoff,
		"Caching":     TestCaching,
		"ParallelFor": TestParallelForFanIn,
		"Finally":     TestFinallyAfterFailure,
		"Recover":     TestCloseThenRecover,
		"RetryRun":    TestRetryRun,
		"List":        TestList,
		"Logs":        TestLogsFollow,
		"Cancel":      TestCancelKillsAndRunsFinally,
		"Lineage":     TestArtifactsStoredWithLineage,
	} {
		t.Run(name, test)
	}
}
