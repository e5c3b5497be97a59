package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// flagValue is the raw text of one option given on the command line. The
// option's short and long flags share one flagValue, so the last one given
// wins, as with argparse. Values are parsed later, by resolveConfig, so that
// an error can say where the value came from.
type flagValue struct {
	opt     *option
	raw     string
	spelled string // the flag as the usage spells it: "-f", "--frontend-port"
}

// flagName is one of the names a flagValue is registered under.
type flagName struct {
	v       *flagValue
	spelled string
}

func (f flagName) String() string {
	if f.v == nil { // the flag package makes zero values to print defaults
		return ""
	}
	return f.v.raw
}

func (f flagName) Set(s string) error {
	f.v.raw, f.v.spelled = s, f.spelled
	return nil
}

// IsBoolFlag lets a boolean option be given without a value: "-d".
func (f flagName) IsBoolFlag() bool { return f.v != nil && f.v.opt.boolean }

// newFlagSet registers every option that has flags, short and long, and
// returns the flag set and each flag's value by flag name. The flag set
// prints nothing: its errors are returned, and -h is the caller's to answer.
func newFlagSet() (*flag.FlagSet, map[string]*flagValue) {
	fs := flag.NewFlagSet(progName, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	byName := make(map[string]*flagValue)
	for i := range options {
		o := &options[i]
		if o.long == "" {
			continue
		}
		v := &flagValue{opt: o}
		if o.short != "" {
			fs.Var(flagName{v: v, spelled: "-" + o.short}, o.short, o.help)
			byName[o.short] = v
		}
		fs.Var(flagName{v: v, spelled: "--" + o.long}, o.long, o.help)
		byName[o.long] = v
	}
	return fs, byName
}

// printUsage writes the -h text: one line per option, its short and long
// flags together, then the layout of the configuration file.
func printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s [options]\n\nZeroMQ proxy service.\n\nOptions:\n", progName)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, o := range options {
		if o.long == "" {
			continue
		}
		names := "    --" + o.long
		if o.short != "" {
			names = "-" + o.short + ", --" + o.long
		}
		if !o.boolean {
			names += " " + o.arg
		}
		help := o.help
		if !o.boolean && o.def != "" && o.def != "0" {
			help += " (default " + o.def + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", names, help)
	}
	fmt.Fprintf(tw, "  -h, --help\tshow this help and exit\n")
	_ = tw.Flush()

	fmt.Fprintf(w, "\nThe configuration file (-c) is INI; a flag given overrides it. Its keys:\n")
	for _, section := range []string{sectionProxy, sectionZMQ} {
		var keys []string
		for _, o := range options {
			if o.section == section {
				keys = append(keys, o.name)
			}
		}
		fmt.Fprintf(w, "  [%s]\n%s", section, wrap(strings.Join(keys, ", "), "    ", 78))
	}
}

// wrap breaks text at spaces into lines of at most width bytes, indent
// included, each line ending in a newline.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for i, word := range strings.Fields(text) {
		if i > 0 && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent
		} else if i > 0 {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
	return b.String()
}
