//go:build !linux

package main

// releaseTextPages does nothing on this system (textpages_linux.go).
func releaseTextPages() int64 { return 0 }
