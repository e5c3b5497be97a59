// Package defaults fills the unset fields of a configuration: the rpc
// client's and server's, the transport's options.
package defaults

// Set sets *v to def when *v is zero or negative, which every number and
// duration of these configurations takes to mean "unset".
func Set[T ~int | ~int64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
