//go:build !linux

package main

import "time"

// processCPU returns 0 here: quiet means allocating little (idlemem.go).
func processCPU() time.Duration { return 0 }

// releaseTextPages does nothing on this system (textpages_linux.go).
func releaseTextPages() int64 { return 0 }
