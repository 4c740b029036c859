package crashtest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcStat returns the start time (field 22 of /proc/PID/stat, clock ticks
// since boot) and parent pid of a live process; "" when pid is gone or a
// zombie, and always "" where there is no /proc. The start time tells a process from a later one with its pid.
func ProcStat(pid int) (started string, ppid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state, ppid, ... with starttime 20th (proc_pid_stat(5)).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", 0
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[19], ppid
}
