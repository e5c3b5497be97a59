package e2e

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// No container runtime nor Kubernetes runs here. These tests read every
// manifest, the compose file and the Dockerfile, and check that what they
// say agrees with the binary: each proxy's command line passes
// --check-config, and the ports, probes and volumes around it are the ones
// that command line binds and serves.

// proxyImage is the image name the manifests and the compose file use.
const proxyImage = "zmq-proxy"

// proxyLine is what --check-config said about one proxy's command line.
type proxyLine map[string]string

// checkProxyArgs runs args through --check-config and returns what it said.
func checkProxyArgs(t *testing.T, what string, args []string) proxyLine {
	t.Helper()
	out := checkConfigArgs(t, what, args)
	rest, ok := strings.CutPrefix(out, "zmq-proxy: configuration OK: ")
	if !ok {
		return nil
	}
	return proxyLine(parseLogLine(rest))
}

// ports are the TCP ports the proxy binds, by what they are for; it fails
// the test for a random port (0), which no manifest can name.
func (l proxyLine) ports(t *testing.T, what string) map[string]int {
	t.Helper()
	ports := map[string]int{}
	for _, k := range []string{"frontend_port", "backend_port", "publisher_port"} {
		if v, ok := l[k]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n == 0 {
				t.Errorf("%s: %s=%q, want a fixed port", what, k, v)
			}
			ports[strings.TrimSuffix(k, "_port")] = n
		}
	}
	if addr := l["metrics_addr"]; addr != "" {
		_, p, _ := strings.Cut(addr, ":")
		n, err := strconv.Atoi(p)
		if err != nil || n == 0 {
			t.Errorf("%s: metrics_addr=%q, want a fixed port", what, addr)
		}
		ports["metrics"] = n
	} else {
		t.Errorf("%s: no --metrics-addr: nothing to probe /readyz and /healthz on", what)
	}
	return ports
}

// --- Kubernetes ---------------------------------------------------------

type k8sObject struct {
	Kind     string
	Metadata struct {
		Name      string
		Namespace string
		Labels    map[string]string
	}
	Spec k8sSpec
	file string
}

type k8sSpec struct {
	Replicas *int
	Selector json.RawMessage // {matchLabels: ...}, or a Service's plain map
	Strategy struct {
		RollingUpdate struct{ MaxUnavailable json.RawMessage }
	}
	Template struct {
		Metadata struct{ Labels map[string]string }
		Spec     podSpec
	}
	ServiceName          string
	VolumeClaimTemplates []struct{ Metadata struct{ Name string } }
	// Service
	ClusterIP                string
	Type                     string
	ExternalName             string
	PublishNotReadyAddresses bool
	Ports                    []struct {
		Name       string
		Port       int
		TargetPort json.RawMessage
	}
	// PodDisruptionBudget
	MinAvailable, MaxUnavailable json.RawMessage
}

type podSpec struct {
	HostNetwork                   bool
	TerminationGracePeriodSeconds *int
	DNSPolicy                     string
	SecurityContext               struct{ RunAsNonRoot *bool }
	Containers                    []container
	Volumes                       []struct{ Name string }
}

type container struct {
	Name    string
	Image   string
	Command []string
	Args    []string
	Env     []struct {
		Name      string
		Value     string
		ValueFrom *struct{ FieldRef *struct{ FieldPath string } }
	}
	Ports []struct {
		Name          string
		ContainerPort int
		HostPort      int
	}
	ReadinessProbe, LivenessProbe *struct {
		HTTPGet *struct {
			Path string
			Port json.RawMessage
		}
	}
	VolumeMounts []struct {
		Name      string
		MountPath string
	}
	SecurityContext *struct {
		ReadOnlyRootFilesystem   *bool
		AllowPrivilegeEscalation *bool
	}
}

// matchLabels is the selector of a workload or a PodDisruptionBudget, or a
// Service's.
func (o *k8sObject) matchLabels(t *testing.T) map[string]string {
	t.Helper()
	var sel struct{ MatchLabels map[string]string }
	if o.Kind == "Service" {
		var m map[string]string
		if len(o.Spec.Selector) > 0 {
			if err := json.Unmarshal(o.Spec.Selector, &m); err != nil {
				t.Fatalf("%s %s: selector: %v", o.Kind, o.Metadata.Name, err)
			}
		}
		return m
	}
	if err := json.Unmarshal(o.Spec.Selector, &sel); err != nil {
		t.Fatalf("%s %s: selector: %v", o.Kind, o.Metadata.Name, err)
	}
	return sel.MatchLabels
}

// selects reports whether the selector sel matches labels (and is not empty).
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// intOrString decodes a port given as a number or a name.
func intOrString(raw json.RawMessage) (int, string) {
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return n, ""
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return 0, s
}

// containerPort resolves a probe's or a Service's port (a number, or the
// name of one of the containers' ports) to a container port; 0 if none.
func containerPort(raw json.RawMessage, cs ...container) int {
	n, name := intOrString(raw)
	for _, c := range cs {
		for _, p := range c.Ports {
			if (name != "" && p.Name == name) || (name == "" && p.ContainerPort == n) {
				return p.ContainerPort
			}
		}
	}
	return 0
}

// kustomization is the part of a kustomization.yaml the tests read.
type kustomization struct {
	Namespace string
	Resources []string
	Images    []struct{ Name, NewName, NewTag string }
}

// kustomizeBuild gathers the objects of the kustomization in dir, as kustomize
// build would (resources, recursively; the namespace), and the files it
// read.
func kustomizeBuild(t *testing.T, dir string, read map[string]bool) []*k8sObject {
	t.Helper()
	kpath := filepath.Join(dir, "kustomization.yaml")
	b, err := os.ReadFile(kpath)
	if err != nil {
		t.Fatal(err)
	}
	read[kpath] = true
	var k kustomization
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("%s: %v", kpath, err)
	}
	var objs []*k8sObject
	for _, r := range k.Resources {
		path := filepath.Join(dir, r)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatalf("%s: resource %s: %v", kpath, r, err)
		}
		if fi.IsDir() {
			objs = append(objs, kustomizeBuild(t, path, read)...)
			continue
		}
		read[path] = true
		objs = append(objs, readManifests(t, path)...)
	}
	for _, o := range objs {
		if k.Namespace != "" && o.Kind != "Namespace" {
			o.Metadata.Namespace = k.Namespace
		}
		for i := range o.Spec.Template.Spec.Containers {
			c := &o.Spec.Template.Spec.Containers[i]
			for _, img := range k.Images {
				if c.Image == img.Name {
					c.Image = img.NewName + ":" + img.NewTag
				}
			}
		}
	}
	return objs
}

// readManifests reads the YAML documents of a manifest file.
func readManifests(t *testing.T, path string) []*k8sObject {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var objs []*k8sObject
	for doc := range strings.SplitSeq("\n"+string(b), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		o := &k8sObject{file: path}
		if err := yaml.Unmarshal([]byte(doc), o); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if o.Kind == "" || o.Metadata.Name == "" {
			t.Fatalf("%s: a document without kind or metadata.name", path)
		}
		objs = append(objs, o)
	}
	return objs
}

// fieldValues stand for what the kubelet puts in $(VAR)s taken from the
// pod's fields.
var fieldValues = map[string]string{
	"status.podIP":  "10.244.1.7",
	"status.hostIP": "192.0.2.10",
	"spec.nodeName": "node-a",
	"metadata.name": "etcd-1",
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces each $(VAR) in args as the kubelet does, from the
// container's env; a $(VAR) it does not define is a test error.
func expand(t *testing.T, what string, c container, args []string) []string {
	t.Helper()
	vals := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			v, ok := fieldValues[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Errorf("%s: env %s from field %s, which the test has no value for", what, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			vals[e.Name] = v
		default:
			vals[e.Name] = e.Value
		}
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = varRef.ReplaceAllStringFunc(a, func(ref string) string {
			name := varRef.FindStringSubmatch(ref)[1]
			v, ok := vals[name]
			if !ok {
				t.Errorf("%s: %q refers to $(%s), which the container's env does not define", what, a, name)
			}
			return v
		})
	}
	return out
}

func TestKubernetesManifests(t *testing.T) {
	ours(t)
	root := filepath.Join("..", "deploy", "kubernetes")
	overlays, err := filepath.Glob(filepath.Join(root, "overlays", "*"))
	if err != nil || len(overlays) < 2 {
		t.Fatalf("overlays: %v %v, want in-cluster-etcd and external-etcd", overlays, err)
	}
	read := map[string]bool{}
	for _, dir := range overlays {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			objs := kustomizeBuild(t, dir, read)
			checkK8s(t, objs)
		})
	}
	// Every manifest belongs to some kustomization.
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		if !read[path] {
			t.Errorf("%s is in no kustomization", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkK8s checks the objects of one overlay as kustomize would build them.
func checkK8s(t *testing.T, objs []*k8sObject) {
	byKind := map[string][]*k8sObject{}
	names := map[string]bool{}
	for _, o := range objs {
		id := o.Kind + "/" + o.Metadata.Namespace + "/" + o.Metadata.Name
		if names[id] {
			t.Errorf("%s defined twice", id)
		}
		names[id] = true
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	workloads := slices.Concat(byKind["Deployment"], byKind["DaemonSet"], byKind["StatefulSet"])
	var central, local *k8sObject
	etcdPort := 0
	for _, s := range byKind["Service"] {
		if s.Metadata.Name == "etcd" {
			for _, p := range s.Spec.Ports {
				etcdPort = p.Port
			}
		}
	}
	if etcdPort != 2379 {
		t.Errorf("Service etcd: port %d, want 2379, where the proxies' -u points", etcdPort)
	}

	for _, w := range workloads {
		what := w.Kind + " " + w.Metadata.Name
		pod := w.Spec.Template.Spec
		if !selects(w.matchLabels(t), w.Spec.Template.Metadata.Labels) {
			t.Errorf("%s: its selector does not select its own pods", what)
		}
		if pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: want securityContext.runAsNonRoot: true", what)
		}
		volumes := map[string]bool{}
		for _, v := range pod.Volumes {
			volumes[v.Name] = true
		}
		for _, v := range w.Spec.VolumeClaimTemplates {
			volumes[v.Metadata.Name] = true
		}
		for _, c := range pod.Containers {
			cwhat := what + " container " + c.Name
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem ||
				c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
				t.Errorf("%s: want readOnlyRootFilesystem: true and allowPrivilegeEscalation: false", cwhat)
			}
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					t.Errorf("%s: mounts volume %q, which the pod does not have", cwhat, m.Name)
				}
			}
			if pod.HostNetwork {
				for _, p := range c.Ports {
					if p.HostPort != p.ContainerPort {
						t.Errorf("%s: port %s: hostPort %d, want the containerPort %d (host network)", cwhat, p.Name, p.HostPort, p.ContainerPort)
					}
				}
			}
			if strings.HasPrefix(c.Image, proxyImage+":") && len(c.Args) > 0 && slices.Contains(proxyCommands, c.Args[0]) {
				checkServiceContainer(t, cwhat, c)
			} else if strings.HasPrefix(c.Image, proxyImage+":") {
				line := checkProxyArgs(t, cwhat, expand(t, cwhat, c, c.Args))
				checkProxyContainer(t, cwhat, line, c)
				if d := line["drain_timeout"]; d != "" { // the kubelet's SIGKILL must not cut the drain short
					drain, err := time.ParseDuration(d)
					g := pod.TerminationGracePeriodSeconds
					switch {
					case g == nil:
						t.Errorf("%s: no terminationGracePeriodSeconds (30 by default), want it said beside the drain_timeout=%s", what, d)
					case err != nil || time.Duration(*g)*time.Second < drain+stopMargin:
						t.Errorf("%s: terminationGracePeriodSeconds %d with drain_timeout=%s (%v), want at least the drain and %v", what, *g, d, err, stopMargin)
					}
				}
				switch line["kind"] {
				case "double-router", "single-router":
					central = w
				case "local":
					local = w
				}
				if want := fmt.Sprintf(`etcd etcd:%d`, etcdPort); line["registry"] != want {
					t.Errorf("%s: registry %q, want %q (the Service etcd)", cwhat, line["registry"], want)
				}
			}
			if c.Name == "etcd" {
				checkEtcdContainer(t, cwhat, w, c, byKind["Service"])
			}
		}
	}

	// Central proxies: rolled one at a time, never all disrupted at once.
	if central == nil || central.Kind != "Deployment" {
		t.Fatalf("central proxies: got %v, want a Deployment", central)
	}
	if central.Spec.Replicas == nil || *central.Spec.Replicas < 2 {
		t.Errorf("Deployment %s: replicas %v, want at least 2", central.Metadata.Name, central.Spec.Replicas)
	}
	if n, _ := intOrString(central.Spec.Strategy.RollingUpdate.MaxUnavailable); n != 0 || len(central.Spec.Strategy.RollingUpdate.MaxUnavailable) == 0 {
		t.Errorf("Deployment %s: rollingUpdate.maxUnavailable %s, want 0 (a new proxy is ready before an old one stops)",
			central.Metadata.Name, central.Spec.Strategy.RollingUpdate.MaxUnavailable)
	}
	pdbs := 0
	for _, pdb := range byKind["PodDisruptionBudget"] {
		if !selects(pdb.matchLabels(t), central.Spec.Template.Metadata.Labels) {
			continue
		}
		pdbs++
		maxU, _ := intOrString(pdb.Spec.MaxUnavailable)
		minA, _ := intOrString(pdb.Spec.MinAvailable)
		switch {
		case len(pdb.Spec.MaxUnavailable) > 0 && maxU >= 1 && maxU < *central.Spec.Replicas:
		case len(pdb.Spec.MinAvailable) > 0 && minA >= 1 && minA < *central.Spec.Replicas:
		default:
			t.Errorf("PodDisruptionBudget %s: minAvailable %s maxUnavailable %s, want one proxy at a time disrupted, never all",
				pdb.Metadata.Name, pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
		}
	}
	if pdbs != 1 {
		t.Errorf("PodDisruptionBudgets of the central proxies: %d, want 1", pdbs)
	}

	// Local proxies: one per node, on the node's network.
	if local == nil || local.Kind != "DaemonSet" {
		t.Fatalf("local proxies: got %v, want a DaemonSet", local)
	}
	if pod := local.Spec.Template.Spec; !pod.HostNetwork || pod.DNSPolicy != "ClusterFirstWithHostNet" {
		t.Errorf("DaemonSet %s: hostNetwork %v dnsPolicy %q, want true and ClusterFirstWithHostNet (so that the Service etcd resolves)",
			local.Metadata.Name, pod.HostNetwork, pod.DNSPolicy)
	}

	// Services: they select pods, and their target ports are those pods'.
	for _, s := range byKind["Service"] {
		what := "Service " + s.Metadata.Name
		if s.Spec.Type == "ExternalName" {
			if s.Spec.ExternalName == "" {
				t.Errorf("%s: ExternalName without externalName", what)
			}
			continue
		}
		var selected []container
		for _, w := range workloads {
			if selects(s.matchLabels(t), w.Spec.Template.Metadata.Labels) {
				selected = append(selected, w.Spec.Template.Spec.Containers...)
			}
		}
		if len(selected) == 0 {
			t.Errorf("%s: selects no pod", what)
			continue
		}
		for _, p := range s.Spec.Ports {
			if containerPort(p.TargetPort, selected...) == 0 {
				t.Errorf("%s: port %s: targetPort %s is no port of the pods it selects", what, p.Name, p.TargetPort)
			}
		}
	}
}

// checkProxyContainer checks a zmq-proxy container against what its command
// line binds: its ports are exactly those, and its probes ask /readyz and
// /healthz on the metrics port.
func checkProxyContainer(t *testing.T, what string, line proxyLine, c container) {
	t.Helper()
	if line == nil {
		return
	}
	bound := line.ports(t, what)
	declared := map[string]int{}
	for _, p := range c.Ports {
		declared[p.Name] = p.ContainerPort
	}
	if !maps.Equal(declared, bound) {
		t.Errorf("%s: container ports %v, want those the proxy binds: %v", what, declared, bound)
	}
	for _, pr := range []struct {
		name, path string
		probe      *struct {
			HTTPGet *struct {
				Path string
				Port json.RawMessage
			}
		}
	}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
		switch {
		case pr.probe == nil || pr.probe.HTTPGet == nil:
			t.Errorf("%s: no %s.httpGet", what, pr.name)
		case pr.probe.HTTPGet.Path != pr.path:
			t.Errorf("%s: %s path %q, want %q", what, pr.name, pr.probe.HTTPGet.Path, pr.path)
		case containerPort(pr.probe.HTTPGet.Port, c) != bound["metrics"]:
			t.Errorf("%s: %s port %s, want the metrics port %d", what, pr.name, pr.probe.HTTPGet.Port, bound["metrics"])
		}
	}
}

// checkServiceContainer checks a service's container (zmq-proxy
// echo-server): it subscribes to its node's local publisher proxy, named
// by the node's name from the downward API.
func checkServiceContainer(t *testing.T, what string, c container) {
	t.Helper()
	if got := flagValue(c.Args, "--node"); got != "$(NODE_NAME)" {
		t.Errorf("%s: --node %q, want $(NODE_NAME)", what, got)
	}
	if !envFromField(c, "NODE_NAME", "spec.nodeName") {
		t.Errorf("%s: no env NODE_NAME from the field spec.nodeName", what)
	}
	expand(t, what, c, c.Args)
}

// envFromField reports whether the container's env has name from the
// pod's field path.
func envFromField(c container, name, path string) bool {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == path {
			return true
		}
	}
	return false
}

// etcdFlags are an etcd command line's --flag=value pairs.
func etcdFlags(args []string) map[string]string {
	f := map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "--") {
			f[k[2:]] = v
		}
	}
	return f
}

// checkEtcdContainer checks the in-cluster etcd: its data on its volume,
// its members named as the StatefulSet names its pods, reachable through
// its headless Service.
func checkEtcdContainer(t *testing.T, what string, w *k8sObject, c container, services []*k8sObject) {
	t.Helper()
	f := etcdFlags(c.Command)
	onVolume := false
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(f["data-dir"], strings.TrimSuffix(m.MountPath, "/")+"/") {
			onVolume = true
		}
	}
	if !onVolume {
		t.Errorf("%s: --data-dir=%q is on no volume: the data would be lost with the pod", what, f["data-dir"])
	}
	if w.Kind != "StatefulSet" || w.Spec.Replicas == nil || *w.Spec.Replicas != 3 {
		t.Fatalf("%s: want a StatefulSet of 3 members", what)
	}
	var members []string
	for i := range *w.Spec.Replicas {
		name := fmt.Sprintf("%s-%d", w.Metadata.Name, i)
		members = append(members, fmt.Sprintf("%s=http://%s.%s:2380", name, name, w.Spec.ServiceName))
	}
	if got, want := f["initial-cluster"], strings.Join(members, ","); got != want {
		t.Errorf("%s: --initial-cluster=%q, want %q", what, got, want)
	}
	headless := false
	for _, s := range services {
		if s.Metadata.Name == w.Spec.ServiceName && s.Spec.ClusterIP == "None" && s.Spec.PublishNotReadyAddresses {
			headless = true
		}
	}
	if !headless {
		t.Errorf("%s: serviceName %q is no headless Service that publishes members before they are ready", what, w.Spec.ServiceName)
	}
	for _, flag := range []string{"listen-client-urls", "advertise-client-urls"} {
		if !strings.HasSuffix(f[flag], ":2379") {
			t.Errorf("%s: --%s=%q, want port 2379", what, flag, f[flag])
		}
	}
}

// --- compose -------------------------------------------------------------

type composeFile struct {
	Services map[string]struct {
		Image     string
		Command   []string
		Ports     []string
		Volumes   []string
		DependsOn []string `json:"depends_on"`
		Profiles  []string
		// StopGracePeriod is how long compose waits after the
		// stop signal before SIGKILL (default 10s).
		StopGracePeriod string `json:"stop_grace_period"`
	}
	Volumes map[string]any
}

// readComposeFile parses deploy/compose/compose.yaml.
func readComposeFile(t *testing.T) composeFile {
	t.Helper()
	path := filepath.Join("..", "deploy", "compose", "compose.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cf
}

// proxyCommands are the binary's commands other than the proxy itself
// that the compose file runs.
var proxyCommands = []string{"list", "echo-server", "call"}

func TestComposeFile(t *testing.T) {
	ours(t)
	cf := readComposeFile(t)
	etcdClient := map[string]string{}  // service -> host:port its clients use
	redisClient := map[string]string{} // the same, for the profile "redis"
	// By registry: "etcd" for the services without the profile "redis",
	// "redis" for those with it.
	registries := map[string][]string{}
	kinds := map[string]map[string]int{"etcd": {}, "redis": {}}
	commands := map[string]map[string]bool{"etcd": {}, "redis": {}}
	for _, name := range slices.Sorted(maps.Keys(cf.Services)) {
		s := cf.Services[name]
		reg := "etcd"
		if slices.Contains(s.Profiles, "redis") {
			reg = "redis"
		}
		for _, d := range s.DependsOn {
			if _, ok := cf.Services[d]; !ok {
				t.Errorf("service %s depends on %q, which is no service", name, d)
			}
		}
		for _, v := range s.Volumes {
			vol, _, _ := strings.Cut(v, ":")
			if _, ok := cf.Volumes[vol]; !ok && !strings.HasPrefix(vol, ".") && !strings.HasPrefix(vol, "/") {
				t.Errorf("service %s mounts volume %q, which is not declared", name, vol)
			}
		}
		switch {
		case len(s.Command) > 0 && s.Command[0] == "etcd":
			f := etcdFlags(s.Command[1:])
			if f["name"] != name || f["advertise-client-urls"] != "http://"+name+":2379" {
				t.Errorf("etcd %s: --name=%q --advertise-client-urls=%q, want the service's name", name, f["name"], f["advertise-client-urls"])
			}
			dataOnVolume := false
			for _, v := range s.Volumes {
				if _, mount, _ := strings.Cut(v, ":"); mount == f["data-dir"] {
					dataOnVolume = true
				}
			}
			if !dataOnVolume {
				t.Errorf("etcd %s: --data-dir=%q is on no volume", name, f["data-dir"])
			}
			etcdClient[name] = name + ":2379"
		case len(s.Command) > 0 && s.Command[0] == "redis-server":
			if reg != "redis" {
				t.Errorf("redis-server %s: not in the profile redis", name)
			}
			redisClient[name] = name + ":6379"
		case strings.HasPrefix(s.Image, proxyImage+":"):
			if len(s.Command) == 0 {
				t.Errorf("service %s: no command", name)
				continue
			}
			if slices.Contains(proxyCommands, s.Command[0]) {
				commands[reg][s.Command[0]] = true
				registries[reg] = append(registries[reg], flagValue(s.Command, "-u"))
				continue
			}
			line := checkProxyArgs(t, "compose service "+name, s.Command)
			if line == nil {
				continue
			}
			kinds[reg][line["kind"]]++
			if d := line["drain_timeout"]; d != "" {
				drain, err := time.ParseDuration(d)
				grace, err2 := time.ParseDuration(cmp.Or(s.StopGracePeriod, "10s"))
				if err != nil || err2 != nil || grace < drain+stopMargin {
					t.Errorf("service %s: stop_grace_period %q (%v) with drain_timeout=%s (%v), want at least the drain and %v", name, s.StopGracePeriod, err2, d, err, stopMargin)
				}
			}
			registries[reg] = append(registries[reg], flagValue(s.Command, "-u"))
			if got := flagValue(s.Command, "--name"); got != name {
				t.Errorf("service %s: --name %q, want the service's name, under which the others reach it", name, got)
			}
			bound := slices.Collect(maps.Values(line.ports(t, name)))
			for _, p := range s.Ports {
				parts := strings.Split(p, ":")
				n, err := strconv.Atoi(parts[len(parts)-1])
				if err != nil || !slices.Contains(bound, n) {
					t.Errorf("service %s: publishes %q, want one of the ports it binds %v", name, p, bound)
				}
			}
		}
	}
	if len(etcdClient) != 3 {
		t.Errorf("etcd members: %v, want 3", slices.Sorted(maps.Keys(etcdClient)))
	}
	if kinds["etcd"]["double-router"] != 2 || kinds["etcd"]["local"] != 2 {
		t.Errorf("proxies by kind: %v, want 2 double-router (central) and 2 local", kinds["etcd"])
	}
	for _, c := range proxyCommands {
		if !commands["etcd"][c] {
			t.Errorf("no service runs zmq-proxy %s", c)
		}
	}
	want := "zmq+etcd://" + strings.Join(slices.Sorted(maps.Values(etcdClient)), ",") + "/"
	for _, r := range registries["etcd"] {
		if r != want {
			t.Errorf("a service's -u %q, want %q: every member of the etcd cluster", r, want)
		}
	}

	// The profile "redis": the same system on oslo.messaging's Redis
	// matchmaker, one redis-server.
	if len(redisClient) != 1 {
		t.Fatalf("redis-server services in the profile redis: %v, want 1", slices.Sorted(maps.Keys(redisClient)))
	}
	if kinds["redis"]["double-router"] < 1 || kinds["redis"]["local"] < 1 {
		t.Errorf("proxies by kind in the profile redis: %v, want a central and a local one", kinds["redis"])
	}
	for _, c := range []string{"echo-server", "call"} {
		if !commands["redis"][c] {
			t.Errorf("no service of the profile redis runs zmq-proxy %s", c)
		}
	}
	want = "zmq+redis://" + slices.Collect(maps.Values(redisClient))[0] + "/0"
	for _, r := range registries["redis"] {
		if r != want {
			t.Errorf("a service's -u %q in the profile redis, want %q", r, want)
		}
	}
}

// flagValue is the value after flag in args, or "".
func flagValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// --- Dockerfile ----------------------------------------------------------

func TestDockerfile(t *testing.T) {
	ours(t)
	b, err := os.ReadFile(filepath.Join("..", "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Join continued lines, drop comments.
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	var stages [][]string // instructions of each stage
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %q before the first FROM", line)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], line)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a build stage and a runtime stage", len(stages))
	}
	build := strings.Join(stages[0], "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/zmq-proxy"} {
		if !strings.Contains(build, want) {
			t.Errorf("Dockerfile build stage: no %q", want)
		}
	}
	final := stages[len(stages)-1]
	get := func(instr string) string {
		v := ""
		for _, l := range final {
			if rest, ok := strings.CutPrefix(l, instr+" "); ok {
				v = rest
			}
		}
		return v
	}
	if u := get("USER"); u == "" || u == "root" || u == "0" || strings.HasPrefix(u, "0:") {
		t.Errorf("Dockerfile: USER %q in the final stage, want a non-root user", u)
	}
	var entry, cmd []string
	if err := json.Unmarshal([]byte(get("ENTRYPOINT")), &entry); err != nil || len(entry) != 1 {
		t.Fatalf("Dockerfile: ENTRYPOINT %q, want the binary alone, in JSON form", get("ENTRYPOINT"))
	}
	if err := json.Unmarshal([]byte(get("CMD")), &cmd); err != nil {
		t.Fatalf("Dockerfile: CMD %q: %v", get("CMD"), err)
	}
	if !bytes.Contains([]byte(strings.Join(final, "\n")), []byte("COPY --from=")) {
		t.Errorf("Dockerfile: the final stage copies nothing from the build stage")
	}
	line := checkProxyArgs(t, "Dockerfile CMD", cmd)
	if line == nil {
		return
	}
	exposed := map[int]bool{}
	for p := range strings.FieldsSeq(get("EXPOSE")) {
		n, _ := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
		exposed[n] = true
	}
	for what, p := range line.ports(t, "Dockerfile CMD") {
		if !exposed[p] {
			t.Errorf("Dockerfile: CMD binds %s port %d, which EXPOSE %q does not list", what, p, get("EXPOSE"))
		}
	}
	if sd := get("ENV"); !strings.HasPrefix(sd, "STATE_DIRECTORY=") {
		t.Errorf("Dockerfile: ENV %q, want STATE_DIRECTORY= (the embedded etcd's data, when no -u is given)", sd)
	}
}
