/* Baseline B, the floor: what libzmq alone costs. A PUB socket sends COUNT messages shaped
 * like MeshBus's receive events (topic, a JSON envelope of ENVELOPE_BYTES, a 60-byte raw
 * frame) at RATE per second (0: flat out). Nothing is decoded or built per message except
 * the `bench <seq> <unix ns>` text written into a prepared envelope.
 *
 *   floor ENDPOINT COUNT RATE ENVELOPE_BYTES [SUBSCRIBERS]
 *
 * It binds an XPUB (a PUB that also reports subscriptions), waits until SUBSCRIBERS (1)
 * subscriptions arrived, prints "subscribed", sends, then lingers until delivered. */
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

static int64_t monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: floor ENDPOINT COUNT RATE ENVELOPE_BYTES [SUBSCRIBERS]\n");
        return 2;
    }
    const char *endpoint = argv[1];
    long count = atol(argv[2]);
    double rate = atof(argv[3]);
    size_t size = (size_t)atol(argv[4]);
    int subscribers = argc > 5 ? atoi(argv[5]) : 1;
    void *context = zmq_ctx_new();
    void *socket = zmq_socket(context, ZMQ_XPUB);
    int hwm = 100000; /* the broker's PUB high-water mark */
    zmq_setsockopt(socket, ZMQ_SNDHWM, &hwm, sizeof hwm);
    int verbose = 1; /* report every subscriber's subscription, not only the first of a prefix */
    zmq_setsockopt(socket, ZMQ_XPUB_VERBOSE, &verbose, sizeof verbose);
    if (zmq_bind(socket, endpoint) != 0) {
        fprintf(stderr, "bind %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        return 1;
    }
    char buffer[256];
    for (int joined = 0; joined < subscribers;) {
        int n = zmq_recv(socket, buffer, sizeof buffer, 0);
        if (n > 0 && buffer[0] == 1) joined++;
    }
    printf("subscribed\n");
    fflush(stdout);

    static const char topic[] = "meshtastic.receive/sim/TEXT_MESSAGE_APP";
    static const char head[] = "{\"schema\":1,\"broker\":\"0123456789abcdef\",\"slot\":\"sim\",\"topic\":\"meshtastic.receive\","
                               "\"seq\":1,\"time\":\"2026-11-23T18:00:00.000Z\",\"packet\":{\"decoded\":{\"text\":\"";
    if (size < sizeof(head) + 64) size = sizeof(head) + 64;
    char *envelope = malloc(size);
    memset(envelope, ' ', size);
    memcpy(envelope, head, sizeof(head) - 1);
    memcpy(envelope + size - 4, "\"}}}", 4);
    unsigned char raw[60];
    memset(raw, 0x2a, sizeof raw);

    int64_t start = monotonic_ns();
    for (long seq = 1; seq <= count; seq++) {
        if (rate > 0) {
            int64_t due = start + (int64_t)((double)(seq - 1) * 1e9 / rate);
            while (monotonic_ns() < due) {
                struct timespec pause = {0, 200000};
                nanosleep(&pause, NULL);
            }
        }
        int written = snprintf(envelope + sizeof(head) - 1, 48, "bench %ld %lld", seq, (long long)now_ns());
        envelope[sizeof(head) - 1 + written] = ' ';
        zmq_send(socket, topic, sizeof(topic) - 1, ZMQ_SNDMORE);
        zmq_send(socket, envelope, size, ZMQ_SNDMORE);
        zmq_send(socket, raw, sizeof raw, 0);
    }
    printf("sent %ld in %.3f s\n", count, (double)(monotonic_ns() - start) / 1e9);
    fflush(stdout);
    int linger = 10000;
    zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(socket);
    zmq_ctx_term(context);
    return 0;
}
