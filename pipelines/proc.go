package pipelines

import (
	"errors"
	"syscall"
)

// signalGroup sends sig to the process group pgid (the step's: it leads
// it). A group that is gone already is no error.
func signalGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 0 {
		return nil
	}
	err := syscall.Kill(-pgid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}
