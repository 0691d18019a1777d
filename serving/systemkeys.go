package serving

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/infergate/infergate/auth"
)

// LocalKeyFile is the file under the data directory that holds the local
// key's token (see NewSystemKeys).
const LocalKeyFile = "admin.key"

// NewSystemKeys makes infergate's own keys for one run (see
// Options.SystemKeys): the local user's, granted admin, command and
// metrics, whose token it writes to dataDir/LocalKeyFile, readable by its
// owner only, for the CLI; and the pipeline steps', granted admin and
// command (a run, which only a key granted command may start, runs
// programs of its author's choosing anyway; its deploy step may declare
// one), whose token it returns for the steps' environment. Both are new at each start:
// a token from an earlier run is refused.
func NewSystemKeys(dataDir string) (keys []SystemKey, stepToken string, err error) {
	localToken, local, err := auth.NewKey(LocalTenant, "local user", time.Time{})
	if err != nil {
		return nil, "", err
	}
	stepToken, steps, err := auth.NewKey(PipelineTenant, "pipeline steps", time.Time{})
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, "", err
	}
	// Written whole under another name, then renamed: a reader never sees
	// half a token, and the file is the owner's alone from its creation.
	path := filepath.Join(dataDir, LocalKeyFile)
	tmp, err := os.CreateTemp(dataDir, "."+LocalKeyFile+".*")
	if err != nil {
		return nil, "", err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, "", err
	}
	if _, err := tmp.WriteString(localToken + "\n"); err != nil {
		tmp.Close()
		return nil, "", err
	}
	if err := tmp.Close(); err != nil {
		return nil, "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, "", fmt.Errorf("the local key: %w", err)
	}
	return []SystemKey{
		{Key: local, Actions: auth.ActionAdmin | auth.ActionCommand | auth.ActionMetrics},
		{Key: steps, Actions: auth.ActionAdmin | auth.ActionCommand},
	}, stepToken, nil
}
