package testutil

import (
	"fmt"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a /metrics endpoint, parsed with Prometheus's
// own text parser.
type Metrics map[string]*dto.MetricFamily

var metricsClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// Scrape reads and parses http://addr/metrics.
func Scrape(addr string) (Metrics, error) {
	resp, err := metricsClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return Metrics(fams), nil
}

// Has reports whether the family name is present.
func (m Metrics) Has(name string) bool { return m[name] != nil }

// Each calls fn with the labels and the value of every sample of family
// name: counters, gauges and untyped values (summaries and histograms are
// not read). An absent family has none.
func (m Metrics) Each(name string, fn func(labels map[string]string, value float64)) {
	for _, s := range m[name].GetMetric() {
		var v float64
		switch {
		case s.Counter != nil:
			v = s.GetCounter().GetValue()
		case s.Gauge != nil:
			v = s.GetGauge().GetValue()
		case s.Untyped != nil:
			v = s.GetUntyped().GetValue()
		default:
			continue
		}
		labels := make(map[string]string, len(s.GetLabel()))
		for _, l := range s.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		fn(labels, v)
	}
}

// Sum is the sum of the samples of family name whose labels include the
// given pairs (key, value, ...). An absent family is 0.
func (m Metrics) Sum(name string, labels ...string) float64 {
	var sum float64
	m.Each(name, func(have map[string]string, v float64) {
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				return
			}
		}
		sum += v
	})
	return sum
}

// Get is the body and status of http://addr+path.
func Get(addr, path string) (int, string, error) {
	resp, err := metricsClient.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var buf [4096]byte
	n, _ := resp.Body.Read(buf[:])
	return resp.StatusCode, string(buf[:n]), nil
}
