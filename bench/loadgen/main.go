// Command loadgen is the benchmark's CONNECT + TLS load client: many goroutines, each opening a
// connection to the proxy, sending CONNECT, doing a full TLS handshake (no session resumption)
// and one or more GETs inside. bench/clients.py's Python client costs more CPU per handshake than
// the proxies it measures, so on two shared cores it, not the proxy, would set the pace.
//
// It prints one JSON line in the shape bench/clients.py's `load` mode prints.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"
)

type result struct {
	Requests int            `json:"requests"`
	Seconds  float64        `json:"seconds"`
	Statuses map[string]int `json:"statuses"`
	Errors   map[string]int `json:"errors"`
	P50ms    *float64       `json:"p50_ms"`
	P99ms    *float64       `json:"p99_ms"`
	CPUs     float64        `json:"cpu_s"`
	Procs    int            `json:"procs"`
}

type worker struct {
	statuses map[string]int
	errors   map[string]int
	lat      []time.Duration
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// tunnel opens a connection through the proxy: CONNECT, then the TLS handshake.
func tunnel(proxy, authority, host string, cfg *tls.Config) (*tls.Conn, *bufio.Reader, error) {
	raw, err := net.DialTimeout("tcp", proxy, 10*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(raw, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority); err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("connect write: %w", err)
	}
	br := bufio.NewReader(raw)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("connect read: %w", err)
	}
	if resp.StatusCode != 200 {
		raw.Close()
		return nil, nil, fmt.Errorf("CONNECT %d", resp.StatusCode)
	}
	if br.Buffered() > 0 {
		raw.Close()
		return nil, nil, fmt.Errorf("bytes after the CONNECT answer")
	}
	c := cfg.Clone()
	c.ServerName = host
	t := tls.Client(raw, c)
	if err := t.Handshake(); err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("tls: %w", err)
	}
	return t, bufio.NewReader(t), nil
}

func get(t *tls.Conn, br *bufio.Reader, req []byte) (int, bool, error) {
	if _, err := t.Write(req); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Close, err
}

func main() {
	proxy := flag.String("proxy", "", "HOST:PORT of the proxy")
	target := flag.String("target", "", "https URL requested inside the tunnel")
	caFile := flag.String("ca", "", "CA that signs the proxy's leaves")
	conns := flag.Int("conns", 16, "concurrent connections")
	seconds := flag.Float64("seconds", 5, "measured seconds")
	ramp := flag.Float64("ramp", 0.5, "seconds before measuring starts")
	closeEach := flag.Bool("close", false, "a new CONNECT and handshake for every request")
	flag.Parse()

	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "https" || *proxy == "" {
		fmt.Println(`{"error": "need --proxy and an https --target"}`)
		os.Exit(2)
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		fmt.Printf("{\"error\": %q}\n", err.Error())
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fmt.Println(`{"error": "no certificate in --ca"}`)
		os.Exit(2)
	}
	// No ClientSessionCache: every connection is a full handshake, as the row promises.
	cfg := &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}}
	authority := u.Host
	if u.Port() == "" {
		authority += ":443"
	}
	path := u.RequestURI()
	conn := ""
	if *closeEach {
		conn = "Connection: close\r\n"
	}
	req := []byte(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: credproxy-bench\r\n%s\r\n", path, u.Host, conn))

	start := time.Now().Add(time.Duration(*ramp * float64(time.Second)))
	stop := start.Add(time.Duration(*seconds * float64(time.Second)))
	workers := make([]*worker, *conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{statuses: map[string]int{}, errors: map[string]int{}}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			var t *tls.Conn
			var br *bufio.Reader
			for {
				now := time.Now()
				if now.After(stop) {
					break
				}
				t0 := now
				if t == nil {
					var err error
					if t, br, err = tunnel(*proxy, authority, u.Hostname(), cfg); err != nil {
						w.errors[err.Error()]++
						t = nil
						time.Sleep(10 * time.Millisecond)
						continue
					}
				}
				st, closing, err := get(t, br, req)
				if err != nil {
					w.errors["request: "+err.Error()]++
					t.Close()
					t = nil
					continue
				}
				if end := time.Now(); t0.After(start) && !end.After(stop) {
					w.lat = append(w.lat, end.Sub(t0))
					w.statuses[fmt.Sprint(st)]++
				}
				if closing || *closeEach {
					t.Close()
					t = nil
				}
			}
			if t != nil {
				t.Close()
			}
		}()
	}
	time.Sleep(time.Until(start))
	cpu0 := cpuSeconds()
	wg.Wait()
	cpu := cpuSeconds() - cpu0

	res := result{Seconds: *seconds, Statuses: map[string]int{}, Errors: map[string]int{}, CPUs: cpu, Procs: 1}
	var lat []time.Duration
	for _, w := range workers {
		lat = append(lat, w.lat...)
		for k, v := range w.statuses {
			res.Statuses[k] += v
		}
		for k, v := range w.errors {
			if len(k) > 100 {
				k = k[:100]
			}
			res.Errors[k] += v
		}
	}
	res.Requests = len(lat)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(q float64) *float64 {
		if len(lat) == 0 {
			return nil
		}
		i := int(q * float64(len(lat)))
		if i >= len(lat) {
			i = len(lat) - 1
		}
		ms := float64(lat[i]) / 1e6
		return &ms
	}
	res.P50ms, res.P99ms = pct(0.5), pct(0.99)
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}
