/*
 * A benchmark reference, not part of proctor: the least work any relay can do that makes
 * what a client sent durable before forwarding it. It parses nothing, checks nothing, chains
 * and signs nothing; it copies bytes, writes them to a file and, in `durable` mode, calls
 * fdatasync once per round of ready sockets (group commit) before forwarding the client
 * bytes of that round. Target bytes are written too and forwarded at once, as proctor does
 * with results. `plain` mode does the same without fdatasync. `overlap` mode keeps proctor's
 * rule for statements that cannot outlive the connection (issue 15): client bytes are
 * forwarded at once, the round's fdatasync runs while the target works, and target bytes read
 * before the fdatasync that covers their session's client bytes are held until it returns.
 *
 * `integration/bench/pg.sh` runs it beside pgbouncer and proctor so the cost of durability
 * itself on the machine at hand is measured in the same run: proctor cannot beat this relay
 * in `durable` mode, and pgbouncer cannot beat it in `plain` mode.
 *
 * One thread and epoll, like pgbouncer. (A variant that synced on a second thread while the
 * first kept relaying measured lower on 2 vCPUs: its wake-ups cost more than the overlap won.)
 * The record file is zero-filled up front and written round-robin, so fdatasync never has to
 * persist a new file size (proctor preallocates its segments for the same reason).
 *
 * usage: durable_relay LISTEN_PORT TARGET_PORT RECORD_FILE durable|overlap|plain
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define MAX_FD 65536
#define RECORD_FILE_BYTES (64L << 20)

struct side {
    int peer;
    int from_client;
    /* Client bytes read this round, forwarded once they are durable (durable mode); target
     * bytes read this round while the client's bytes are not durable yet (overlap mode). */
    char held[CHUNK];
    size_t held_len;
    /* Overlap mode: client bytes of this session were recorded this round, not yet synced. */
    int unsynced;
};

static struct side *sides[MAX_FD];
static int record_fd;
static off_t record_at;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void record(const char *buf, size_t len) {
    if (record_at + (off_t)len > RECORD_FILE_BYTES) record_at = 0;
    if (pwrite(record_fd, buf, len, record_at) != (ssize_t)len) die("pwrite");
    record_at += (off_t)len;
}

/* Blocking sockets: a send returns once everything is queued (messages here are small). */
static int send_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void drop(int ep, int fd) {
    struct side *s = sides[fd];
    if (!s) return;
    int peer = s->peer;
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    epoll_ctl(ep, EPOLL_CTL_DEL, peer, NULL);
    close(fd);
    close(peer);
    free(sides[fd]);
    free(sides[peer]);
    sides[fd] = sides[peer] = NULL;
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(0x7f000001);
    return a;
}

static void accept_one(int ep, int listener, int target_port) {
    int one = 1;
    int c = accept(listener, NULL, NULL);
    if (c < 0) return;
    int t = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in ta = loopback(target_port);
    if (t < 0 || t >= MAX_FD || c >= MAX_FD || connect(t, (struct sockaddr *)&ta, sizeof ta) != 0) {
        close(c);
        if (t >= 0) close(t);
        return;
    }
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(t, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sides[c] = calloc(1, sizeof(struct side));
    sides[t] = calloc(1, sizeof(struct side));
    if (!sides[c] || !sides[t]) die("calloc");
    sides[c]->peer = t;
    sides[c]->from_client = 1;
    sides[t]->peer = c;
    struct epoll_event ec = {.events = EPOLLIN, .data.fd = c};
    struct epoll_event et = {.events = EPOLLIN, .data.fd = t};
    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ec);
    epoll_ctl(ep, EPOLL_CTL_ADD, t, &et);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s LISTEN_PORT TARGET_PORT RECORD_FILE durable|overlap|plain\n",
                argv[0]);
        return 2;
    }
    int listen_port = atoi(argv[1]), target_port = atoi(argv[2]);
    int overlap = strcmp(argv[4], "overlap") == 0;
    int durable = overlap || strcmp(argv[4], "durable") == 0;

    record_fd = open(argv[3], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (record_fd < 0) die("open");
    static char zeros[1 << 20];
    for (off_t at = 0; at < RECORD_FILE_BYTES; at += sizeof zeros)
        if (pwrite(record_fd, zeros, sizeof zeros, at) != (ssize_t)sizeof zeros) die("pwrite");
    if (fsync(record_fd) != 0) die("fsync");

    int one = 1;
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in la = loopback(listen_port);
    if (bind(listener, (struct sockaddr *)&la, sizeof la) != 0 || listen(listener, 128) != 0)
        die("listen");
    int ep = epoll_create1(0);
    struct epoll_event el = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &el);

    static struct epoll_event ready[256];
    static int held_fds[256];
    char buf[CHUNK];
    for (;;) {
        int n = epoll_wait(ep, ready, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        int held = 0, need_sync = 0;
        for (int i = 0; i < n; i++) {
            int fd = ready[i].data.fd;
            if (fd == listener) {
                accept_one(ep, listener, target_port);
                continue;
            }
            struct side *s = sides[fd];
            if (!s) continue;
            ssize_t got = recv(fd, buf, sizeof buf, 0);
            if (got <= 0) {
                drop(ep, fd);
                continue;
            }
            record(buf, (size_t)got);
            if (overlap) {
                struct side *client = s->from_client ? s : sides[s->peer];
                if (s->from_client) {
                    s->unsynced = need_sync = 1;
                    if (send_all(s->peer, buf, (size_t)got) != 0) {
                        drop(ep, fd);
                        continue;
                    }
                } else if (client && client->unsynced && s->held_len + (size_t)got <= CHUNK) {
                    memcpy(s->held + s->held_len, buf, (size_t)got);
                    s->held_len += (size_t)got;
                } else if ((client && client->unsynced) ||
                           send_all(s->peer, buf, (size_t)got) != 0) {
                    /* (More than a chunk held in one round cannot happen: one recv per fd.) */
                    drop(ep, fd);
                    continue;
                }
                held_fds[held++] = fd;
            } else if (s->from_client) {
                memcpy(s->held, buf, (size_t)got);
                s->held_len = (size_t)got;
                held_fds[held++] = fd;
                need_sync = 1;
            } else if (send_all(s->peer, buf, (size_t)got) != 0) {
                drop(ep, fd);
            }
        }
        if (held == 0) continue;
        if (durable && need_sync && fdatasync(record_fd) != 0) die("fdatasync");
        if (overlap) {
            for (int i = 0; i < held; i++) {
                struct side *s = sides[held_fds[i]];
                if (!s) continue;
                s->unsynced = 0;
                if (!s->from_client && s->held_len > 0) {
                    if (send_all(s->peer, s->held, s->held_len) != 0) {
                        drop(ep, held_fds[i]);
                        continue;
                    }
                    s->held_len = 0;
                }
            }
            continue;
        }
        for (int i = 0; i < held; i++) {
            struct side *s = sides[held_fds[i]];
            if (!s || s->held_len == 0) continue;
            if (send_all(s->peer, s->held, s->held_len) != 0) {
                drop(ep, held_fds[i]);
                continue;
            }
            s->held_len = 0;
        }
    }
}
