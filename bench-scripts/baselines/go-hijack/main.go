// go-hijack: the same server as go-nethttp, with the http.Hijacker trick from
// the original question: the handler hijacks the connection, writes the
// response head itself and hands the raw net.Conn to one goroutine per
// connection that writes keep-alives and broadcast events; the handler returns,
// so net/http's per-connection goroutine, bufio buffers and response state are
// released. A client that went away is noticed when a write fails (no reader
// goroutine per connection: that would cost a second stack).
//
// Usage: go-hijack [--listen 127.0.0.1:PORT] [--heartbeat SECS] [--cert FILE --key FILE]
// (or env LISTEN / HEARTBEAT / TLS_CERT / TLS_KEY; port 0 picks a free port).
// With --cert/--key (a PEM certificate chain and its key) it serves HTTPS with
// the lines a user adds for TLS: ServeTLS instead of Serve, and HTTP/2 turned
// off (an empty TLSNextProto, the documented way), since an HTTP/2 stream
// cannot be hijacked and clients would pick HTTP/2 through ALPN. The hijacked
// net.Conn is then a *tls.Conn, so every write is encrypted by crypto/tls.
// Built as go-hijack-tls for the TLS benchmarks.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

type hub struct {
	mu     sync.Mutex
	topics map[string]map[chan []byte]struct{}
}

func (h *hub) subscribe(topic string) chan []byte {
	ch := make(chan []byte, 16)
	h.mu.Lock()
	defer h.mu.Unlock()
	subs := h.topics[topic]
	if subs == nil {
		subs = make(map[chan []byte]struct{})
		h.topics[topic] = subs
	}
	subs[ch] = struct{}{}
	return ch
}

func (h *hub) unsubscribe(topic string, ch chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.topics[topic], ch)
	if len(h.topics[topic]) == 0 {
		delete(h.topics, topic)
	}
}

func (h *hub) publish(topic string, msg []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.topics[topic] {
		select {
		case ch <- msg:
		default: // this client is too slow: drop the event rather than block everyone
		}
	}
}

var (
	events    = &hub{topics: make(map[string]map[chan []byte]struct{})}
	heartbeat time.Duration
)

func validTopic(t string) bool {
	if len(t) < 1 || len(t) > 256 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.~/", c)) {
			return false
		}
	}
	return true
}

// encode turns a body into one SSE event, each line of it a "data:" line.
func encode(body []byte) []byte {
	lines := strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
	return []byte("data: " + strings.Join(lines, "\ndata: ") + "\n\n")
}

func handleEvents(w http.ResponseWriter, r *http.Request) {
	topic := strings.TrimPrefix(r.URL.Path, "/events/")
	if !validTopic(topic) {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet:
		subscribe(w, r, topic)
	case http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		events.publish(topic, encode(body))
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func subscribe(w http.ResponseWriter, r *http.Request, topic string) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "hijacking unsupported", http.StatusInternalServerError)
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	// No Content-Length and no chunking: the stream ends when the connection does.
	if _, err := io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"+
		"Cache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n"); err != nil {
		conn.Close()
		return
	}
	ch := events.subscribe(topic)
	go stream(conn, topic, ch)
}

func stream(conn net.Conn, topic string, ch chan []byte) {
	defer conn.Close()
	defer events.unsubscribe(topic, ch)
	ticker := time.NewTicker(heartbeat)
	defer ticker.Stop()
	keepAlive := []byte("event: keep-alive\ndata: null\n\n")
	for {
		var err error
		select {
		case <-ticker.C:
			_, err = conn.Write(keepAlive)
		case msg := <-ch:
			_, err = conn.Write(msg)
		}
		if err != nil {
			return
		}
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	hbDefault, _ := strconv.ParseFloat(envOr("HEARTBEAT", "5"), 64)
	listen := flag.String("listen", envOr("LISTEN", "127.0.0.1:8080"), "listen address")
	hb := flag.Float64("heartbeat", hbDefault, "seconds between keep-alive events")
	cert := flag.String("cert", envOr("TLS_CERT", ""), "PEM certificate file (serve HTTPS)")
	key := flag.String("key", envOr("TLS_KEY", ""), "PEM private key file")
	flag.Parse()
	heartbeat = time.Duration(*hb * float64(time.Second))

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	mux := http.NewServeMux()
	mux.HandleFunc("/events/", handleEvents)
	// No Read/WriteTimeout: they would cut the long-lived streams.
	if *cert == "" {
		log.Fatal((&http.Server{Handler: mux}).Serve(ln))
	}
	srv := &http.Server{Handler: mux, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	log.Fatal(srv.ServeTLS(ln, *cert, *key))
}
