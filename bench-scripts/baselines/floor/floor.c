/*
 * floor: the kernel floor for an SSE server.
 *
 * It does the least any server speaking the common interface can do:
 *   - GET /events/<topic>: read the request ONCE (one read(2); a request line
 *     split across segments is refused), write the SSE response head once,
 *     then keep the socket in epoll doing nothing else.  Per subscriber it keeps
 *     two ints in an fd-indexed table plus one int in its topic's fd array.
 *   - every HEARTBEAT seconds: one write(2) of the keep-alive per subscriber.
 *   - POST /events/<topic> (Content-Length body, keep-alive allowed): encode the
 *     event once, then one plain write(2) per subscriber of the topic.
 * No user-space send buffer: a subscriber whose socket buffer is full simply
 * misses that event (EAGAIN), one that takes a partial write is closed (its
 * stream would be corrupt).  So no server can use less memory or CPU per
 * subscriber than this; it is the yardstick, not a usable product.
 *
 * Usage: floor [--listen 127.0.0.1:PORT] [--heartbeat SECS]
 *        (or env LISTEN / HEARTBEAT; port 0 picks a free port).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { FREE = 0, NEW, SUB, PUB };
struct conn { uint8_t kind; int topic, pos; };   /* pos: index in topic->fds */
struct pub { char *buf; size_t len; };            /* publishers only: few */
struct topic { char *name; int *fds, n, cap; };

static struct conn *conns;        /* indexed by fd */
static struct pub *pubs;          /* indexed by fd, buffers only for POSTers */
static struct topic *topics;      /* open-addressing hash table */
static size_t ntopics, tcap = 1024;
static int ep, maxfd;

static const char HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                           "Cache-Control: no-cache\r\n\r\n";
static const char HB[] = "event: keep-alive\ndata: null\n\n";

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    while (n--) h = (h ^ (uint8_t)*s++) * 1099511628211ULL;
    return h;
}

/* Find a topic; create it when create != 0.  Returns index or -1. */
static int topic_get(const char *name, size_t n, int create) {
    if (create && (ntopics + 1) * 2 > tcap) {               /* grow, rehash */
        struct topic *old = topics; size_t ocap = tcap;
        tcap *= 2; topics = calloc(tcap, sizeof *topics);
        for (size_t i = 0; i < ocap; i++) if (old[i].name) {
            size_t j = fnv(old[i].name, strlen(old[i].name)) & (tcap - 1);
            while (topics[j].name) j = (j + 1) & (tcap - 1);
            topics[j] = old[i];
            for (int k = 0; k < old[i].n; k++) conns[old[i].fds[k]].topic = (int)j;
        }
        free(old);
    }
    size_t i = fnv(name, n) & (tcap - 1);
    for (; topics[i].name; i = (i + 1) & (tcap - 1))
        if (strlen(topics[i].name) == n && !memcmp(topics[i].name, name, n)) return (int)i;
    if (!create) return -1;
    topics[i].name = strndup(name, n); ntopics++;
    return (int)i;
}

static void drop(int fd) {                   /* close + unsubscribe */
    struct conn *c = &conns[fd];
    if (c->kind == SUB) {
        struct topic *t = &topics[c->topic];
        int last = t->fds[--t->n];
        t->fds[c->pos] = last; conns[last].pos = c->pos;   /* swap-remove */
    }
    if (c->kind == PUB) { free(pubs[fd].buf); pubs[fd].buf = NULL; pubs[fd].len = 0; }
    c->kind = FREE;
    close(fd);                               /* also removes it from epoll */
}

/* Write msg to every subscriber of topic ti: one write(2) per socket. */
static void broadcast(int ti, const char *msg, size_t len) {
    struct topic *t = &topics[ti];
    for (int i = t->n - 1; i >= 0; i--) {    /* backwards: drop() swap-removes */
        ssize_t w = write(t->fds[i], msg, len);
        if (w == (ssize_t)len || (w < 0 && (errno == EAGAIN || errno == EINTR))) continue;
        drop(t->fds[i]);                     /* error or partial write */
    }
}

static void reply(int fd, const char *status) {
    char r[128];
    int n = snprintf(r, sizeof r, "HTTP/1.1 %s\r\nContent-Length: 0\r\n\r\n", status);
    if (write(fd, r, (size_t)n) < 0) { /* the client is gone; nothing to do */ }
}

/* "/events/<topic>" at p (ending at a space or '?'): topic start/len, or 0. */
static int parse_topic(const char *p, const char *end, const char **tp, size_t *tn) {
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~/";
    if (end - p < 8 || memcmp(p, "/events/", 8)) return 0;
    const char *s = p + 8, *q = s;
    while (q < end && *q != ' ' && *q != '?') {
        if (!*q || !strchr(ok, *q)) return 0;
        q++;
    }
    if (q == end || q == s || q - s > 256) return 0;
    *tp = s; *tn = (size_t)(q - s);
    return 1;
}

/* Handle complete POSTs buffered for publisher fd; returns 0 if fd was closed. */
static int handle_posts(int fd) {
    struct pub *p = &pubs[fd];
    for (;;) {
        char *he = memmem(p->buf, p->len, "\r\n\r\n", 4);
        if (!he) { if (p->len > 16384) { drop(fd); return 0; } return 1; }
        size_t hlen = (size_t)(he + 4 - p->buf), blen = 0;
        const char *tp; size_t tn;
        for (char *h = p->buf; h < he; h++)  /* find Content-Length (any case) */
            if ((h == p->buf || h[-1] == '\n') && !strncasecmp(h, "content-length:", 15))
                blen = strtoul(h + 15, NULL, 10);
        if (blen > 65536) { reply(fd, "413 Payload Too Large"); drop(fd); return 0; }
        if (p->len < hlen + blen) return 1;  /* body not complete yet */
        if (strncmp(p->buf, "POST ", 5) || !parse_topic(p->buf + 5, he, &tp, &tn)) {
            reply(fd, "404 Not Found");
        } else {
            int ti = topic_get(tp, tn, 0);
            if (ti >= 0 && topics[ti].n) {
                /* "data: " + body with every newline continued as "\ndata: " + "\n\n" */
                const char *b = p->buf + hlen;
                char *msg = malloc(blen * 7 + 16), *m = msg;
                m = stpcpy(m, "data: ");
                for (size_t i = 0; i < blen; i++) {
                    if (b[i] == '\r') continue;
                    if (b[i] == '\n') m = stpcpy(m, "\ndata: "); else *m++ = b[i];
                }
                m = stpcpy(m, "\n\n");
                broadcast(ti, msg, (size_t)(m - msg));
                free(msg);
            }
            reply(fd, "204 No Content");
        }
        memmove(p->buf, p->buf + hlen + blen, p->len - hlen - blen);
        p->len -= hlen + blen;
    }
}

static void on_readable(int fd) {
    struct conn *c = &conns[fd];
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) { drop(fd); return; }
    if (n < 0) return;
    if (c->kind == SUB) return;              /* subscribers send nothing; ignore */
    if (c->kind == NEW && n > 4 && !memcmp(buf, "GET ", 4)) {
        const char *tp; size_t tn;
        if (!parse_topic(buf + 4, buf + n, &tp, &tn)) { reply(fd, "404 Not Found"); drop(fd); return; }
        if (write(fd, HEAD, sizeof HEAD - 1) != (ssize_t)(sizeof HEAD - 1)) { drop(fd); return; }
        int ti = topic_get(tp, tn, 1);
        struct topic *t = &topics[ti];
        if (t->n == t->cap) { t->cap = t->cap ? t->cap * 2 : 4; t->fds = realloc(t->fds, t->cap * sizeof(int)); }
        c->kind = SUB; c->topic = ti; c->pos = t->n; t->fds[t->n++] = fd;
        return;
    }
    if (c->kind == NEW) c->kind = PUB;       /* anything else: buffer, parse POSTs */
    struct pub *p = &pubs[fd];
    p->buf = realloc(p->buf, p->len + (size_t)n);
    memcpy(p->buf + p->len, buf, (size_t)n); p->len += (size_t)n;
    handle_posts(fd);
}

static double now(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    const char *listen_s = getenv("LISTEN") ? getenv("LISTEN") : "127.0.0.1:8080";
    double hb = getenv("HEARTBEAT") ? atof(getenv("HEARTBEAT")) : 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--listen")) listen_s = argv[i + 1];
        else if (!strcmp(argv[i], "--heartbeat")) hb = atof(argv[i + 1]);
        else { fprintf(stderr, "usage: floor [--listen ADDR] [--heartbeat SECS]\n"); return 2; }
    }
    if (hb <= 0) hb = 5;
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl);
    maxfd = (int)rl.rlim_cur;                /* calloc: pages are touched lazily */
    conns = calloc((size_t)maxfd, sizeof *conns);
    pubs = calloc((size_t)maxfd, sizeof *pubs);
    topics = calloc(tcap, sizeof *topics);

    struct sockaddr_in sa = { .sin_family = AF_INET };
    char host[64]; int port;
    if (sscanf(listen_s, "%63[^:]:%d", host, &port) != 2 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "bad --listen %s\n", listen_s); return 2;
    }
    sa.sin_port = htons((uint16_t)port);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, SOMAXCONN)) { perror("listen"); return 1; }
    socklen_t sl = sizeof sa; getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("listening on %s:%d\n", host, ntohs(sa.sin_port)); fflush(stdout);

    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd }, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    double next_hb = now() + hb;
    for (;;) {
        int timeout = (int)((next_hb - now()) * 1000) + 1;
        int n = epoll_wait(ep, evs, 256, timeout < 0 ? 0 : timeout);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd != lfd) { on_readable(fd); continue; }
            int cfd;
            while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                if (cfd >= maxfd) { close(cfd); continue; }
                conns[cfd].kind = NEW;
                struct epoll_event ce = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = cfd };
                epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ce);
            }
        }
        if (now() >= next_hb) {              /* heartbeat: one write per subscriber */
            next_hb += hb;
            for (size_t t = 0; t < tcap; t++)
                if (topics[t].name && topics[t].n) broadcast((int)t, HB, sizeof HB - 1);
        }
    }
}
