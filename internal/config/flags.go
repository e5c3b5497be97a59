package config

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// flagValue is the raw text of one option given on the command line. The
// option's short and long flags share one flagValue, so the last one given
// wins, as with argparse. Values are parsed later, by ResolveProxy, so that
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

// newFlagSet registers every option of cmd that has flags, short and long,
// and returns the flag set and each flag's value by flag name. The flag set
// prints nothing: its errors are returned, and -h is the caller's to answer.
func newFlagSet(cmd Command) (*flag.FlagSet, map[string]*flagValue) {
	fs := flag.NewFlagSet(ProgName, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	byName := make(map[string]*flagValue)
	for i := range options {
		o := &options[i]
		if o.long == "" || !o.takes(cmd) {
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

// PrintUsage writes the -h text of cmd: what it does, one line per option,
// its short and long flags together, then the configuration file.
func PrintUsage(w io.Writer, cmd Command) {
	if cmd == CmdList {
		fmt.Fprintf(w, "Usage: %s list [options]\n\n", ProgName)
		fmt.Fprint(w, wrap("Print the proxies registered in etcd and exit; with -w, go on printing "+
			"the changes until SIGINT or SIGTERM. With no URL, list asks the etcd on --etcd-addr, "+
			"the one a proxy started without a URL runs; it never starts one.", "", 78))
	} else {
		fmt.Fprintf(w, "Usage: %s [options]            run a proxy (the options below)\n", ProgName)
		fmt.Fprintf(w, "       %s COMMAND [options]    run a command (%s COMMAND -h for its options)\n\n", ProgName, ProgName)
		fmt.Fprintf(w, "Commands:\n")
		printCommands(w)
		fmt.Fprintf(w, "\n%s", exitStatusText)
	}
	fmt.Fprintf(w, "\nOptions:\n")
	printOptions(w, cmd)

	fmt.Fprintf(w, "\n%s", wrap("Precedence, option by option: a flag overrides the environment "+
		"($"+envEtcdPassword+" for --etcd-password, so that the password need not be on the command line), "+
		"which overrides the configuration file (-c), which overrides the default.", "", 78))
	if cmd == CmdList {
		fmt.Fprintf(w, "\n%s", wrap("The configuration file is the proxy's: list reads its url and etcd_* keys "+
			"in ["+sectionProxy+"] and ignores the others.", "", 78))
		fmt.Fprint(w, "\nOutput: a table with the columns ID, KIND, HOST, FRONTEND, BACKEND, PUBLISHER\n"+
			"and STARTED (UTC); \"-\" where a proxy has no such socket; then the servers'\n"+
			"targets, TARGET (topic or topic.server, as call takes it), IDENTITY, HOST,\n"+
			"STARTED. With --json, one JSON record per line instead. With -w, after the\n"+
			"tables, one line per change, TIME the moment list saw it (UTC):\n"+
			"  TIME + ID KIND FRONTEND BACKEND PUBLISHER   a proxy registered, or changed\n"+
			"  TIME - ID                                   a proxy went away\n"+
			"  TIME + target TARGET IDENTITY               a server registered\n"+
			"  TIME - target TARGET IDENTITY               a server went away\n"+
			"With -w and --json, one {\"time\":...,\"event\":\"put\"|\"delete\",\"record\":{...}}\n"+
			"(or \"target\":{...}) per line, those registered at the start first, as puts.\n"+
			"\nExit status: 0; 1 when etcd does not answer in time, or refuses; 2 for a bad\n"+
			"option.\n")
		return
	}
	fmt.Fprintf(w, "\n%s", wrap("-H/--host (host in the file) is the address the proxy binds; --name (name) is "+
		"the host name it registers under. oslo.messaging's host meant that name.", "", 78))
	fmt.Fprintf(w, "\nThe configuration file (-c) is INI. Its keys:\n")
	for _, section := range []string{sectionDefault, sectionProxy, sectionZMQ, sectionRedis} {
		var keys []string
		for _, o := range options {
			if o.section == section {
				keys = append(keys, o.iniKey())
			}
		}
		fmt.Fprintf(w, "  [%s]\n%s", section, wrap(strings.Join(keys, ", "), "    ", 78))
	}
	fmt.Fprint(w, wrap("A key of ["+sectionProxy+"] that is none of these is an error; other keys of an "+
		"oslo.messaging file are ignored (logged at debug), but for [matchmaker_redis] sentinel_hosts with a Redis "+
		"registry: Redis Sentinel is not supported, and refused. "+
		"url, or transport_url when url is not set, names the registry: zmq+etcd://, zmq+redis:// "+
		"(oslo.messaging's Redis matchmaker; [matchmaker_redis] fills the host, port and password it "+
		"leaves out) or zmq:// (none). zmq_target_expire is the TTL of the registration (--target-expire). "+
		"With Redis, the records are rewritten every zmq_target_update (default a third of the TTL); "+
		"with etcd it is unused, the client renews the lease every TTL/3, but it must be less than "+
		"zmq_target_expire.", "  ", 78))
}

// CommandHelp is one line about each command of the binary, in the order
// of -h. A test checks that it names every command of subcommands.
var CommandHelp = []struct{ name, text string }{
	{"list", "print the proxies and servers registered in etcd; -w: and every change"},
	{"call", "call a method of a server of a topic and print its reply"},
	{"cast", "send a method to a server of a topic, without a reply"},
	{"fanout", "send a method to every server of a topic"},
	{"notify", "send a notification, as oslo.messaging's notifier does"},
	{"echo-server", "serve a topic: echo and fail, printing every message received"},
	{"bench", "measure the running deployment: rate, latency, lost and duplicate messages"},
	{"ctl", "pause, resume or read the stats of a running proxy (its --admin-addr)"},
	{"keygen", "make a CURVE key pair (zcert files with -o)"},
}

// exitStatusText is the exit status of every command, as -h says it.
const exitStatusText = `Exit status, every command:
  0  done (a proxy or a watch: stopped by SIGINT or SIGTERM)
  1  failed while running: etcd, Redis, a proxy or a server did not answer
     in time or refused; no server for the target; a proxy's socket failed
  2  bad flag, argument or configuration: nothing was attempted
  3  call: the server's handler raised an error (class and message on stderr)
`

// printCommands writes one line per command.
func printCommands(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range CommandHelp {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.text)
	}
	_ = tw.Flush()
}

// printOptions writes one line per option of cmd that has flags.
func printOptions(w io.Writer, cmd Command) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, o := range options {
		if o.long == "" || !o.takes(cmd) {
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
		switch {
		case o.defHelp != "":
			help += " (default " + o.defHelp + ")"
		case !o.boolean && o.def != "" && o.def != "0":
			help += " (default " + o.def + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", names, help)
	}
	fmt.Fprintf(tw, "  -h, --help\tshow this help and exit\n")
	_ = tw.Flush()
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
