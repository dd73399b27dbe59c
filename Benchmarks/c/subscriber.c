/* The one subscriber every benchmark uses, whatever publishes: it counts the texts
 * `bench <seq> <unix ns>` the load simulator sent, wherever they appear in a message, and
 * measures latency from the simulator's send time to now (same machine, same clock).
 *
 *   subscriber ENDPOINT COUNT [IDLE_MS] [PREFIX]
 *
 * Prints "first" when the first message of any kind arrives (so a driver knows the
 * subscription is in place), then, when COUNT texts arrived or IDLE_MS passed without one,
 * one JSON line: received, unique, lost, duplicates, seconds (first to last), latency
 * percentiles in microseconds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int compare(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double percentile(int64_t *sorted, long n, double p) {
    if (n == 0) return 0;
    long index = (long)(p * (double)(n - 1) + 0.5);
    return (double)sorted[index] / 1000.0;
}

/* Finds "bench <seq> <ns>" in a frame; 1 if found. */
static int parse(const char *data, size_t size, long *seq, int64_t *sent) {
    static const char marker[] = "bench ";
    for (size_t i = 0; i + sizeof(marker) - 1 < size; i++) {
        if (data[i] != 'b' || memcmp(data + i, marker, sizeof(marker) - 1) != 0) continue;
        char buffer[64];
        size_t length = size - i - (sizeof(marker) - 1);
        if (length > sizeof(buffer) - 1) length = sizeof(buffer) - 1;
        memcpy(buffer, data + i + sizeof(marker) - 1, length);
        buffer[length] = 0;
        long long s, t;
        if (sscanf(buffer, "%lld %lld", &s, &t) == 2) {
            *seq = (long)s;
            *sent = (int64_t)t;
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: subscriber ENDPOINT COUNT [IDLE_MS] [PREFIX]\n");
        return 2;
    }
    const char *endpoint = argv[1];
    long count = atol(argv[2]);
    int idle = argc > 3 ? atoi(argv[3]) : 3000;
    const char *prefix = argc > 4 ? argv[4] : "";
    void *context = zmq_ctx_new();
    void *socket = zmq_socket(context, ZMQ_SUB);
    int hwm = 0; /* unlimited on this side: losses are the publisher's */
    zmq_setsockopt(socket, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(socket, ZMQ_SUBSCRIBE, prefix, strlen(prefix));
    if (zmq_connect(socket, endpoint) != 0) {
        fprintf(stderr, "connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        return 1;
    }
    unsigned char *seen = calloc((size_t)count + 1, 1);
    int64_t *latency = malloc(sizeof(int64_t) * ((size_t)count + 1));
    long received = 0, unique = 0, duplicates = 0;
    int64_t first = 0, last = 0;
    int announced = 0;
    zmq_msg_t message;
    zmq_msg_init(&message);
    while (unique < count) {
        int timeout = announced ? idle : 60000;
        zmq_setsockopt(socket, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        if (zmq_msg_recv(&message, socket, 0) < 0) break; /* idle: the load is over */
        if (!announced) {
            printf("first\n");
            fflush(stdout);
            announced = 1;
        }
        long seq = 0;
        int64_t sent = 0;
        int found = 0;
        for (;;) {
            if (!found) found = parse(zmq_msg_data(&message), zmq_msg_size(&message), &seq, &sent);
            if (!zmq_msg_more(&message)) break;
            zmq_msg_recv(&message, socket, 0);
        }
        if (!found || seq < 1 || seq > count) continue;
        int64_t now = now_ns();
        received++;
        if (seen[seq]) {
            duplicates++;
            continue;
        }
        seen[seq] = 1;
        latency[unique++] = now - sent;
        if (!first) first = now;
        last = now;
    }
    qsort(latency, (size_t)unique, sizeof(int64_t), compare);
    printf("{\"received\": %ld, \"unique\": %ld, \"lost\": %ld, \"duplicates\": %ld, \"seconds\": %.6f, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f}\n",
           received, unique, count - unique, duplicates, (double)(last - first) / 1e9, percentile(latency, unique, 0.5),
           percentile(latency, unique, 0.99), percentile(latency, unique, 0.999), percentile(latency, unique, 1.0));
    fflush(stdout);
    zmq_msg_close(&message);
    zmq_close(socket);
    zmq_ctx_term(context);
    return 0;
}
