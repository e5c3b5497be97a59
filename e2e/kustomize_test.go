package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// kustomize renders the kustomization in dir as "kubectl apply -k" would
// (kustomize's own library, sigs.k8s.io/kustomize/api), and returns the
// YAML and the objects.
func kustomize(t *testing.T, dir string) (string, []map[string]any) {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	y, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	for _, r := range m.Resources() {
		o, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	return string(y), objs
}

// dig follows keys (map keys, or "0", "1"... for list items) into v.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any) string { s, _ := v.(string); return s }

func strs(v any) []string {
	var out []string
	for _, x := range asList(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func asList(v any) []any { l, _ := v.([]any); return l }

// argValue is the value after flag in args, "" if none.
func argValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// quantity parses a Kubernetes memory quantity: 512Mi, 1Gi, 64M, 1048576.
func quantity(t *testing.T, s string) int64 {
	t.Helper()
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				continue
			}
			return v * u.mult
		}
	}
	t.Fatalf("quantity %q", s)
	return 0
}

// containersOf are a workload's pod's containers, each a map.
func containersOf(o map[string]any) []map[string]any {
	var cs []map[string]any
	for _, c := range asList(dig(o, "spec", "template", "spec", "containers")) {
		if m, ok := c.(map[string]any); ok {
			cs = append(cs, m)
		}
	}
	return cs
}

// envFrom is the field path the container's env var name comes from.
func envFrom(c map[string]any, name string) string {
	for _, e := range asList(c["env"]) {
		if str(dig(e, "name")) == name {
			return str(dig(e, "valueFrom", "fieldRef", "fieldPath"))
		}
	}
	return ""
}

// minStalledPeers is how many peers with full queues the central proxies'
// memory limit must hold, at their --hwm-bytes (docs/deploy.md, "Memory").
const minStalledPeers = 256

// baseMemory is a proxy's memory besides its peers' queues.
const baseMemory = 64 << 20

// What kubectl apply -k would apply, overlay by overlay: the node's name
// from the downward API where a local proxy registers and where a service
// looks for it; no pprof anywhere; a memory limit that holds the queues
// of minStalledPeers stalled peers; NetworkPolicies; and an in-cluster
// etcd with resources, one member per node, a PodDisruptionBudget,
// probes and auto-compaction.
func TestKustomizeOutput(t *testing.T) {
	overlays, err := filepath.Glob(filepath.Join("..", "deploy", "kubernetes", "overlays", "*"))
	if err != nil || len(overlays) < 3 {
		t.Fatalf("overlays: %v %v, want in-cluster-etcd, external-etcd and demo", overlays, err)
	}
	services := 0
	for _, dir := range overlays {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			_, objs := kustomize(t, dir)
			// The objects, not the YAML: its comments may say why there
			// is no pprof.
			if all := fmt.Sprint(objs); strings.Contains(all, "--pprof-addr") || strings.Contains(all, "/debug/pprof") {
				t.Errorf("the output mentions pprof: profiles are served only with --pprof-addr, which no manifest gives")
			}
			var policies []map[string]any
			var central, local, etcd, etcdPDB map[string]any
			for _, o := range objs {
				kind, name := str(o["kind"]), str(dig(o, "metadata", "name"))
				switch {
				case kind == "NetworkPolicy":
					policies = append(policies, o)
				case kind == "Deployment" && name == "zmq-proxy":
					central = o
				case kind == "DaemonSet" && name == "zmq-proxy-local":
					local = o
				case kind == "StatefulSet" && name == "etcd":
					etcd = o
				case kind == "PodDisruptionBudget" && name == "etcd":
					etcdPDB = o
				}
				for _, c := range containersOf(o) {
					args := strs(c["args"])
					if len(args) > 0 && args[0] == "echo-server" {
						services++
						if argValue(args, "--node") != "$(NODE_NAME)" || envFrom(c, "NODE_NAME") != "spec.nodeName" {
							t.Errorf("%s %s: args %q, env NODE_NAME from %q; want --node $(NODE_NAME) from spec.nodeName",
								kind, name, args, envFrom(c, "NODE_NAME"))
						}
					}
				}
			}
			if central == nil || local == nil {
				t.Fatalf("no central Deployment or local DaemonSet in the output")
			}

			lc := containersOf(local)[0]
			if args := strs(lc["args"]); argValue(args, "--name") != "$(NODE_NAME)" || envFrom(lc, "NODE_NAME") != "spec.nodeName" {
				t.Errorf("local proxies: --name %q, NODE_NAME from %q; want $(NODE_NAME) from spec.nodeName",
					argValue(args, "--name"), envFrom(lc, "NODE_NAME"))
			}

			cc := containersOf(central)[0]
			hwm := int64(16 << 20) // the default
			if v := argValue(strs(cc["args"]), "--hwm-bytes"); v != "" {
				hwm = quantity(t, v)
			}
			limit := quantity(t, str(dig(cc, "resources", "limits", "memory")))
			if peers := (limit - baseMemory) / hwm; peers < minStalledPeers {
				t.Errorf("central proxies: memory limit %d with --hwm-bytes %d holds %d stalled peers, want at least %d",
					limit, hwm, peers, minStalledPeers)
			}

			// The central proxies' NetworkPolicy: ZeroMQ ports from the
			// cluster, the metrics port not from everywhere.
			found := false
			for _, p := range policies {
				if str(dig(p, "spec", "podSelector", "matchLabels", "app.kubernetes.io/component")) != "central" {
					continue
				}
				found = true
				for _, rule := range asList(dig(p, "spec", "ingress")) {
					ports := fmt.Sprint(dig(rule, "ports"))
					from := fmt.Sprint(dig(rule, "from"))
					if strings.Contains(ports, "metrics") && strings.Contains(from, "namespaceSelector:map[]") {
						t.Errorf("NetworkPolicy %s: the metrics port is open to every namespace", str(dig(p, "metadata", "name")))
					}
				}
			}
			if !found {
				t.Errorf("no NetworkPolicy selects the central proxies")
			}

			if filepath.Base(dir) == "external-etcd" {
				return
			}
			if etcd == nil {
				t.Fatal("no etcd StatefulSet")
			}
			ec := containersOf(etcd)[0]
			for _, k := range [][]string{{"requests", "cpu"}, {"requests", "memory"}, {"limits", "memory"}} {
				if str(dig(ec, append([]string{"resources"}, k...)...)) == "" {
					t.Errorf("etcd: no resources.%s", strings.Join(k, "."))
				}
			}
			term := dig(etcd, "spec", "template", "spec", "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "0")
			if str(dig(term, "topologyKey")) != "kubernetes.io/hostname" ||
				str(dig(term, "labelSelector", "matchLabels", "app.kubernetes.io/name")) != "etcd" {
				t.Errorf("etcd: anti-affinity %v, want one member per node required", term)
			}
			if ec["readinessProbe"] == nil || ec["livenessProbe"] == nil {
				t.Errorf("etcd: readinessProbe %v livenessProbe %v, want both", ec["readinessProbe"], ec["livenessProbe"])
			}
			cmd := strs(ec["command"])
			for _, want := range []string{"--auto-compaction-mode=periodic", "--auto-compaction-retention=1h"} {
				if !slices.Contains(cmd, want) {
					t.Errorf("etcd: command %q, want %s", cmd, want)
				}
			}
			if etcdPDB == nil || str(dig(etcdPDB, "spec", "selector", "matchLabels", "app.kubernetes.io/name")) != "etcd" ||
				fmt.Sprint(dig(etcdPDB, "spec", "maxUnavailable")) != "1" {
				t.Errorf("etcd: PodDisruptionBudget %v, want maxUnavailable 1 of the etcd pods", etcdPDB)
			}
		})
	}
	if services == 0 {
		t.Errorf("no overlay runs a service (echo-server) to show how a service's pod finds its node's proxy")
	}
}
