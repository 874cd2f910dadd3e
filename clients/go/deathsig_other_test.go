//go:build !linux

package segmentd

import "os/exec"

func setDeathSignal(cmd *exec.Cmd) {}
