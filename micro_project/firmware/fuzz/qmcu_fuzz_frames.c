/* Fuzz harness of the firmware's frame parser and command server, for host builds with
 * AddressSanitizer + UndefinedBehaviorSanitizer (micro_project/fuzz.py builds and runs it).
 *
 *   qmcu_fuzz_frames FRAMES [SEED]   seeded generator: random, valid, and mutated frames
 *   built with -DQMCU_LIBFUZZER      libFuzzer entry point instead (clang -fsanitize=fuzzer)
 *
 * Besides the sanitizers' checks it asserts the parser's invariants and that everything the
 * server sends back is a sequence of well-formed frames. Exit 0 and a summary line on success. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qmcu_frame.h"
#include "qmcu_hal.h"
#include "qmcu_server.h"

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* ---- a small model: output = f(input), two kernels, kernel 1 fails ---- */
static uint8_t model_in[700], model_out[96];
static const qmcu_model_desc_t fuzz_desc = {QMCU_MODEL_API_VERSION, "fuzz", "0123456789abcdef",
                                            model_in, model_out, sizeof model_in,
                                            sizeof model_out, 1024, 2};
const qmcu_model_desc_t *qmcu_model_describe(void) { return &fuzz_desc; }
int qmcu_run(const uint8_t *input, uint8_t *output) {
    for (size_t i = 0; i < sizeof model_out; i++)
        output[i] = (uint8_t)(input[i * 7 % sizeof model_in] ^ i);
    return input[0] == 0xEE ? -5 : 0;
}
int qmcu_run_kernel(uint32_t id, const uint8_t *input, uint8_t *output) {
    if (id == 1) return -2;
    output[0] = input[0];
    return 0;
}

static qmcu_server_t server;

/* ---- HAL: the link is in memory; responses are checked as they leave ---- */
static qmcu_parser_t reply_parser;
static unsigned long replies, reply_bytes, long_runs;
static uint8_t last_reply[QMCU_FRAME_MAX];
static size_t last_reply_len;
static uint32_t fake_clock;

void qmcu_hal_init(void) {}
int qmcu_hal_getc(void) { return -1; }
void qmcu_hal_write(const uint8_t *data, size_t len) {
    /* every write is exactly one complete, valid frame */
    qmcu_frame_t f;
    CHECK(len >= QMCU_HEADER_BYTES + QMCU_TRAILER_BYTES && len <= QMCU_FRAME_MAX);
    for (size_t i = 0; i < len; i++) {
        qmcu_event_t ev = qmcu_parser_feed(&reply_parser, data[i], &f);
        CHECK(i + 1 == len ? ev == QMCU_EV_FRAME : ev == QMCU_EV_NONE);
    }
    CHECK(f.len + QMCU_HEADER_BYTES + QMCU_TRAILER_BYTES == len);
    CHECK(f.type & 0x80u);
    if (f.type != QMCU_TYPE_NAK) {            /* status, then this boot's id */
        uint32_t boot;
        CHECK(f.len >= QMCU_ANSWER_HEAD_BYTES);
        memcpy(&boot, f.payload + 1, 4);
        CHECK(boot == server.boot_id && boot != 0);
        if ((f.type == (QMCU_CMD_RUN | 0x80u) || f.type == (QMCU_CMD_RUN_KERNEL | 0x80u)) &&
            f.payload[0] == QMCU_OK) {        /* repeats stop after QMCU_MAX_RUN_MS */
            uint32_t runs;
            uint64_t ticks;
            CHECK(f.len == QMCU_ANSWER_HEAD_BYTES + 12u);
            memcpy(&runs, f.payload + 5, 4);
            memcpy(&ticks, f.payload + 9, 8);
            CHECK(runs >= 1 && runs <= QMCU_MAX_REPEAT);
            CHECK(ticks < (uint64_t)QMCU_MAX_RUN_MS * qmcu_hal_counter_hz() / 1000u + 16u);
            long_runs += runs > 1;
        }
    }
    replies++;
    reply_bytes += len;
    memcpy(last_reply, data, len);
    last_reply_len = len;
}
uint32_t qmcu_hal_cycles(void) { return fake_clock += 3; }
uint32_t qmcu_hal_counter_hz(void) { return 1000u; }
const char *qmcu_hal_counter_name(void) { return "fuzz"; }
const char *qmcu_hal_board(void) { return "fuzz-host"; }
void qmcu_hal_exit(int code) { exit(code); }

/* ---- driving ---- */
static qmcu_parser_t probe;        /* a second parser fed the same bytes, for its invariants */
static unsigned long frames_seen, events_seen, resends_replayed;

static void feed(const uint8_t *data, size_t len) {
    qmcu_frame_t f;
    for (size_t i = 0; i < len; i++) {
        qmcu_server_feed(&server, data[i]);
        qmcu_event_t ev = qmcu_parser_feed(&probe, data[i], &f);
        CHECK(probe.n <= sizeof probe.buf);
        CHECK(probe.need == 0 || (probe.need >= QMCU_HEADER_BYTES + QMCU_TRAILER_BYTES &&
                                  probe.need <= QMCU_FRAME_MAX && probe.n < probe.need));
        CHECK(probe.n == 0 || probe.buf[0] == QMCU_SYNC);
        if (ev == QMCU_EV_FRAME) {
            CHECK(f.len + QMCU_HEADER_BYTES + QMCU_TRAILER_BYTES <= QMCU_FRAME_MAX);
            frames_seen++;
        }
        if (ev != QMCU_EV_NONE) events_seen++;
    }
}

#ifdef QMCU_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        qmcu_server_init(&server, qmcu_model_describe());
        ready = 1;
    }
    qmcu_parser_reset(&server.parser);
    qmcu_parser_reset(&probe);
    feed(data, size);
    return 0;
}
#else
static uint64_t rng_state;
static uint32_t rnd(void) {   /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}
static uint32_t below(uint32_t n) { return n ? rnd() % n : 0; }

/* A frame whose checksums are right and whose payload is chosen to reach the command code:
 * real commands with arguments around the buffer limits, and arbitrary ones. */
static size_t valid_frame(uint8_t *out, size_t cap) {
    static const uint32_t edges[] = {0, 1, 2, 95, 96, 97, 504, 505, 511, 512, 699, 700, 701,
                                     100000, 100001, 0x7FFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFCu};
    uint8_t payload[QMCU_MAX_PAYLOAD];
    size_t len = 0;
    uint8_t type = (uint8_t)(below(4) ? 1 + below(8) : rnd());
    uint32_t shape = below(3);
    if (shape == 0) {                       /* argument words at interesting values */
        size_t words = below(3);
        for (size_t w = 0; w < words; w++) {
            uint32_t v = below(2) ? edges[below(sizeof edges / sizeof edges[0])] : rnd();
            memcpy(payload + len, &v, 4);
            len += 4;
        }
        if (below(2)) {                     /* u16 length field of read_output */
            uint16_t v = (uint16_t)(below(2) ? edges[below(12)] : rnd());
            memcpy(payload + len, &v, 2);
            len += 2;
        }
    } else {
        /* any length, but long frames rarely when the maximum is large (they cost time
         * in proportion, and the limit itself is reached by the lengths just below it) */
        len = shape == 1 ? below(16)
              : below(64) == 0 ? QMCU_MAX_PAYLOAD - below(4)
              : below((QMCU_MAX_PAYLOAD < 1024u ? QMCU_MAX_PAYLOAD : 1024u) + 1);
        for (size_t i = 0; i < len; i++) payload[i] = (uint8_t)rnd();
        if (len >= 4 && below(2)) memcpy(payload, &edges[below(sizeof edges / sizeof edges[0])], 4);
    }
    return qmcu_frame_encode(out, cap, type, (uint8_t)rnd(), payload, len);
}

static size_t mutate(uint8_t *buf, size_t len, size_t cap) {
    size_t n = 1 + below(4);
    for (size_t k = 0; k < n; k++) {
        switch (below(7)) {
        case 0: if (len) buf[below((uint32_t)len)] ^= (uint8_t)(1u << below(8)); break;
        case 1: if (len) buf[below((uint32_t)len)] = (uint8_t)rnd(); break;
        case 2: if (len) len = below((uint32_t)len); break;                      /* truncate */
        case 3:                                                                  /* insert */
            if (len < cap) {
                size_t at = below((uint32_t)len + 1);
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = below(2) ? QMCU_SYNC : (uint8_t)rnd();
                len++;
            }
            break;
        case 4:                                                                  /* delete */
            if (len) {
                size_t at = below((uint32_t)len);
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            }
            break;
        case 5:                       /* plausible header, lying length, right header CRC */
            if (len >= QMCU_HEADER_BYTES) {
                buf[4] = (uint8_t)rnd();
                buf[5] = (uint8_t)(below(2) ? below(3) : rnd());
                buf[6] = qmcu_crc8(buf, QMCU_HEADER_BYTES - 1);
            }
            break;
        default:                      /* other protocol version, right header CRC */
            if (len >= QMCU_HEADER_BYTES) {
                buf[1] = (uint8_t)rnd();
                buf[6] = qmcu_crc8(buf, QMCU_HEADER_BYTES - 1);
            }
            break;
        }
    }
    return len;
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "hang: watchdog expired\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(3);
}

int main(int argc, char **argv) {
    unsigned long frames = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000ul;
    rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) * 2654435761ull + 1 : 88172645463325252ull;
    unsigned watchdog = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 1200u;
    signal(SIGALRM, on_alarm);
    alarm(watchdog);
    qmcu_server_init(&server, qmcu_model_describe());
    qmcu_parser_reset(&probe);
    qmcu_parser_reset(&reply_parser);
    static uint8_t buf[2 * QMCU_FRAME_MAX + 64];
    for (unsigned long i = 0; i < frames; i++) {
        size_t len;
        switch (below(4)) {
        case 0:                                   /* random bytes */
            len = below(64) ? below(48)
                  : below(below(16) && sizeof buf > 2048u ? 2048u : (uint32_t)sizeof buf);
            for (size_t k = 0; k < len; k++) buf[k] = (uint8_t)(below(8) ? rnd() : QMCU_SYNC);
            break;
        case 1:                                   /* valid frame, sometimes sent twice */
            len = valid_frame(buf, sizeof buf);
            if (below(4) == 0) {
                /* a resend: a run executed just before is answered again, byte for byte,
                 * without running again */
                static uint8_t first[QMCU_FRAME_MAX];
                uint32_t ok = server.frames_ok, replayed = server.runs_replayed;
                feed(buf, len);
                size_t first_len = last_reply_len;
                memcpy(first, last_reply, first_len);
                int executed = server.frames_ok == ok + 1;
                unsigned long r = replies;
                uint32_t runs = fake_clock;
                feed(buf, len);
                if (server.runs_replayed != replayed) {
                    CHECK(replies == r + 1 && fake_clock == runs);
                    CHECK(!executed ||
                          (last_reply_len == first_len && !memcmp(last_reply, first, first_len)));
                    resends_replayed++;
                }
                continue;
            }
            break;
        default:                                  /* mutated valid frame */
            len = mutate(buf, valid_frame(buf, sizeof buf), sizeof buf);
            break;
        }
        feed(buf, len);
        if (below(8) == 0) {                      /* the link goes quiet mid-frame */
            qmcu_frame_t f;
            size_t held = probe.n + probe.skipped;
            qmcu_server_link_quiet(&server);
            CHECK(qmcu_parser_abandon(&probe, &f) == (held ? QMCU_EV_TRUNCATED : QMCU_EV_NONE));
            CHECK(probe.n == 0 && probe.need == 0 && probe.skipped == 0 && server.parser.n == 0);
        }
        if (below(1000) == 0) {                   /* let a pending partial frame complete */
            memset(buf, 0, sizeof buf);
            feed(buf, QMCU_FRAME_MAX);
        }
    }
    printf("fuzz: %lu frames fed, %lu parsed intact, %lu parser events, %lu replies "
           "(%lu bytes), server ok=%lu bad=%lu, repeated runs %lu, resent runs replayed "
           "%lu\n", frames, frames_seen, events_seen, replies, reply_bytes,
           (unsigned long)server.frames_ok, (unsigned long)server.frames_bad, long_runs,
           resends_replayed);
    return 0;
}
#endif
