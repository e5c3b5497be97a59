package main

import (
	"bytes"
	"strings"
	"testing"
)

// runCase is one call of run: its arguments, the exit code, the whole of
// stderr and a part of stdout.
type runCase struct {
	name       string
	args       []string
	wantCode   int
	wantStderr string // the whole of stderr
	wantStdout string // a part of stdout
}

// checkRuns runs each case as a subtest, with prefix before its arguments.
func checkRuns(t *testing.T, prefix []string, tests []runCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := run(append(append([]string(nil), prefix...), tt.args...), &stdout, &stderr); got != tt.wantCode {
				t.Errorf("exit code: got %d, want %d (stderr %q)", got, tt.wantCode, stderr.String())
			}
			if got := stderr.String(); got != tt.wantStderr {
				t.Errorf("stderr: got %q, want %q", got, tt.wantStderr)
			}
			if got := stdout.String(); !strings.Contains(got, tt.wantStdout) {
				t.Errorf("stdout: got %q, want it to contain %q", got, tt.wantStdout)
			}
		})
	}
}
