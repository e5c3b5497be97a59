package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// promtool is Debian's, from the prometheus package (.ci/test.sh installs
// it).
const promtool = "/usr/bin/promtool"

var rulesDir = filepath.Join("..", "deploy", "prometheus")

// The alert rules are valid (promtool check rules), and their tests pass
// (promtool test rules): each alert fires on the series that should fire
// it, with its labels and annotations, and stays quiet on the others.
func TestAlertRules(t *testing.T) {
	if _, err := os.Stat(promtool); err != nil {
		t.Fatalf("%s: %v; install Debian's prometheus package (.ci/test.sh does)", promtool, err)
	}
	for _, args := range [][]string{
		{"check", "rules", "zmq-proxy.rules.yml"},
		{"test", "rules", "zmq-proxy.rules.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = rulesDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// Every alert has a test in which it fires.
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	readYAML(t, filepath.Join(rulesDir, "zmq-proxy.rules.yml"), &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string
				ExpAlerts []any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		}
	}
	readYAML(t, filepath.Join(rulesDir, "zmq-proxy.rules.test.yml"), &tests)
	fired := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			}
		}
	}
	var exprs []string
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			exprs = append(exprs, r.Expr)
			if !fired[r.Alert] {
				t.Errorf("alert %s: no test in which it fires", r.Alert)
			}
		}
	}
	if n < 5 {
		t.Errorf("%d alert rules, want the set docs/deploy.md describes", n)
	}
	checkMetricNames(t, "alert rules", exprs)
}

// The Grafana dashboard is JSON Grafana reads: panels with Prometheus
// queries, each of the proxy's own metrics.
func TestGrafanaDashboard(t *testing.T) {
	path := filepath.Join("..", "deploy", "grafana", "zmq-proxy.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID, Title string
		Panels     []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct{ Query any }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) < 4 {
		t.Fatalf("%s: uid %q title %q, %d panels; want a titled dashboard with the proxy's panels", path, d.UID, d.Title, len(d.Panels))
	}
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no query", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(string); ok {
			exprs = append(exprs, q)
		}
	}
	checkMetricNames(t, "dashboard", exprs)
}

var (
	metricName = regexp.MustCompile(`\b(zmqproxy|process|go)_[a-z0-9_]+\b`)
	descName   = regexp.MustCompile(`NewDesc\(\s*"(zmqproxy_[a-z0-9_]+)"`)
)

// checkMetricNames fails the test for a metric in exprs that the proxy
// does not export: zmqproxy_* must be declared in internal/metrics, the Go
// and process collectors' in a real proxy's /metrics.
func checkMetricNames(t *testing.T, what string, exprs []string) {
	t.Helper()
	src, err := filepath.Glob(filepath.Join("..", "internal", "metrics", "*.go"))
	if err != nil || len(src) == 0 {
		t.Fatalf("internal/metrics: %v", err)
	}
	declared := map[string]bool{}
	for _, f := range src {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range descName.FindAllStringSubmatch(string(b), -1) {
			declared[m[1]] = true
		}
	}
	var runtime []string
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			switch {
			case strings.HasPrefix(name, "zmqproxy_"):
				if !declared[name] {
					t.Errorf("%s: %s is no metric of internal/metrics", what, name)
				}
			case !slices.Contains(runtime, name):
				runtime = append(runtime, name)
			}
		}
	}
	if len(runtime) == 0 {
		return
	}
	ours(t)
	m := startProxy(t, proxyOpts{}).scrape(t)
	for _, name := range runtime {
		if !m.Has(name) {
			t.Errorf("%s: %s is not in a proxy's /metrics", what, name)
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
