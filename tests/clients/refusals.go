// Sends the requests of a JSON file with Go's net/http (standard library only: HTTP/2 through
// its bundled http2, or HTTP/1.1) and prints one JSON line per request: the status and whether
// the body arrived whole, or the error. The same contract as refusals.py:
//
//	refusals -http2|-http1 -ca CA [-cert CERT -key KEY] BASE_URL REQUESTS.json
//
// Each request: {"method", "path", "headers": {...}, "body": "..."}. All requests of a run share
// one client, so HTTP/2 requests are streams of one connection when the server keeps it open.
// The server's certificate is always verified against CA.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

type request struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

type seen struct {
	Status      int     `json:"status,omitempty"`
	HTTPVersion string  `json:"http_version,omitempty"`
	Type        *string `json:"type,omitempty"`
	Error       string  `json:"error,omitempty"`
}

func main() {
	http2 := flag.Bool("http2", false, "HTTP/2 (ALPN h2)")
	http1 := flag.Bool("http1", false, "HTTP/1.1 only")
	ca := flag.String("ca", "", "the CA file the server's certificate is verified against")
	cert := flag.String("cert", "", "the client certificate (PEM)")
	key := flag.String("key", "", "its private key (PEM)")
	flag.Parse()
	if *http2 == *http1 || *ca == "" || flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: refusals -http2|-http1 -ca CA [-cert CERT -key KEY] BASE_URL REQUESTS.json")
		os.Exit(2)
	}
	base, file := flag.Arg(0), flag.Arg(1)

	pem, err := os.ReadFile(*ca)
	check(err)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		check(fmt.Errorf("no certificate in %s", *ca))
	}
	config := &tls.Config{RootCAs: roots}
	if *cert != "" {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		check(err)
		config.Certificates = []tls.Certificate{pair}
	}
	transport := &http.Transport{TLSClientConfig: config}
	if *http2 {
		// A Transport with its own TLS config speaks HTTP/1.1 unless told otherwise: what a Go
		// service that sets a client certificate does to get HTTP/2.
		transport.ForceAttemptHTTP2 = true
	} else {
		// An empty, non-nil map turns HTTP/2 off, as net/http's documentation says.
		transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

	raw, err := os.ReadFile(file)
	check(err)
	var requests []request
	check(json.Unmarshal(raw, &requests))
	out := json.NewEncoder(os.Stdout)
	for _, r := range requests {
		check(out.Encode(send(client, base, r)))
	}
}

func send(client *http.Client, base string, r request) seen {
	var body io.Reader
	if r.Body != "" {
		body = bytes.NewReader([]byte(r.Body))
	}
	req, err := http.NewRequest(r.Method, base+r.Path, body)
	if err != nil {
		return seen{Error: err.Error()}
	}
	for name, value := range r.Headers {
		req.Header.Set(name, value)
	}
	resp, err := client.Do(req)
	if err != nil {
		return seen{Error: err.Error()}
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		// The head arrived, the body did not arrive whole.
		return seen{Status: resp.StatusCode, HTTPVersion: resp.Proto, Error: "reading the body: " + err.Error()}
	}
	result := seen{Status: resp.StatusCode, HTTPVersion: resp.Proto}
	var problem map[string]any
	if len(answer) > 0 {
		if err := json.Unmarshal(answer, &problem); err == nil {
			if kind, ok := problem["type"].(string); ok {
				result.Type = &kind
			}
		}
	}
	return result
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "refusals:", err)
		os.Exit(1)
	}
}
