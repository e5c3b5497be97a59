// Package config is zmq-proxy's configuration: one declarative table of
// options (options), each row naming the commands that take it, its flags,
// its key in oslo.messaging's INI file, its default and its parser;
// Resolve reads a command's options from the defaults, the file, the
// environment and the flags into a Config, whose groups each command
// turns into its own small configuration. A bad value is one error line
// that names it and where it came from.
package config
