/* RPC command execution (commands and payloads: qmcu_protocol.h, PROTOCOL.md). Every command is
 * idempotent, so the host may resend a request whose answer it did not receive intact. */
#include "qmcu_server.h"

#include <string.h>

#include "qmcu_hal.h"

/* Optional HAL calls (qmcu_hal.h): a link without a timed read waits for ever, and the counter
 * is the only source of boot-to-boot variation. */
__attribute__((weak)) int qmcu_hal_getc_timeout(uint32_t ms) {
    (void)ms;
    return qmcu_hal_getc();
}

__attribute__((weak)) uint32_t qmcu_hal_entropy(void) { return qmcu_hal_cycles(); }

__attribute__((weak)) int qmcu_run_kernel(uint32_t kernel_id, const uint8_t *input,
                                          uint8_t *output) {
    (void)kernel_id;
    (void)input;
    (void)output;
    return QMCU_KERNEL_UNKNOWN;
}

/* Response payload under construction (inside the tx buffer, after the header). */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} out_t;

static void put_u8(out_t *o, uint8_t v) {
    if (o->n < o->cap) o->p[o->n++] = v;
}
static void put_u16(out_t *o, uint32_t v) {
    put_u8(o, (uint8_t)v);
    put_u8(o, (uint8_t)(v >> 8));
}
static void put_u32(out_t *o, uint32_t v) {
    put_u16(o, v & 0xFFFFu);
    put_u16(o, v >> 16);
}
static void put_u64(out_t *o, uint64_t v) {
    put_u32(o, (uint32_t)v);
    put_u32(o, (uint32_t)(v >> 32));
}
static void put_text(out_t *o, const char *s) {
    while (s && *s) put_u8(o, (uint8_t)*s++);
}
static void put_dec(out_t *o, int32_t v) {
    char buf[12];
    int i = 11;
    uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u);
    if (v < 0) buf[--i] = '-';
    put_text(o, &buf[i]);
}
static void put_hex8(out_t *o, uint8_t v) {
    static const char hex[] = "0123456789abcdef";
    put_text(o, "0x");
    put_u8(o, (uint8_t)hex[v >> 4]);
    put_u8(o, (uint8_t)hex[v & 0xFu]);
}
/* Length-prefixed string, at most 63 bytes, cut to the room left; with no room even for the
 * length byte it is left out (the host reads a missing string as empty). */
static void put_lstr(out_t *o, const char *s) {
    size_t len = s ? strlen(s) : 0;
    if (o->n >= o->cap) return;
    if (len > 63) len = 63;
    if (o->n + 1 + len > o->cap) len = o->cap - o->n - 1;
    put_u8(o, (uint8_t)len);
    for (size_t i = 0; i < len; i++) put_u8(o, (uint8_t)s[i]);
}

static int payload_too_long(uint32_t len) { return len > QMCU_MAX_PAYLOAD; }

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* An empty payload (NAK, HELLO), or one that starts with a status byte (answers). */
static out_t empty(qmcu_server_t *s) {
    out_t o = {s->tx + QMCU_HEADER_BYTES, 0, QMCU_MAX_PAYLOAD};
    return o;
}

static out_t begin(qmcu_server_t *s, uint8_t status) {
    out_t o = empty(s);
    put_u8(&o, status);
    put_u32(&o, s->boot_id);
    return o;
}

/* Murmur3's finaliser: every input bit flips about half the output bits. */
static uint32_t mix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

static void reply(qmcu_server_t *s, uint8_t type, uint8_t seq, const out_t *o) {
    size_t n = qmcu_frame_encode(s->tx, sizeof s->tx, type, seq, s->tx + QMCU_HEADER_BYTES, o->n);
    if (n) qmcu_hal_write(s->tx, n);
}

static void cmd_info(qmcu_server_t *s, out_t *o) {
    const qmcu_model_desc_t *m = s->model;
    put_u8(o, QMCU_PROTO_VERSION);
    put_u8(o, (uint8_t)m->api_version);
    put_u16(o, QMCU_MAX_PAYLOAD);
    put_u32(o, m->input_bytes);
    put_u32(o, m->output_bytes);
    put_u32(o, m->arena_bytes);
    put_u32(o, m->n_kernels);
    put_u32(o, qmcu_hal_counter_hz());
    /* the hash first: with a small max_payload the later strings are the ones cut short */
    put_lstr(o, m->hash);
    put_lstr(o, m->name);
    put_lstr(o, qmcu_hal_board());
    put_lstr(o, qmcu_hal_counter_name());
}

/* Runs `repeat` times, summing the counter ticks of each run, but stops after QMCU_MAX_RUN_MS
 * of counter time (the answer says how many runs were done). Returns the status byte. */
static uint8_t timed_runs(qmcu_server_t *s, out_t *o, int kernel, uint32_t id, uint32_t repeat) {
    const qmcu_model_desc_t *m = s->model;
    const uint64_t limit = (uint64_t)QMCU_MAX_RUN_MS * qmcu_hal_counter_hz() / 1000u;
    uint64_t ticks = 0;
    uint32_t r;
    for (r = 0; r < repeat && (r == 0 || ticks < limit); r++) {
        uint32_t t0 = qmcu_hal_cycles();
        int rc = kernel ? qmcu_run_kernel(id, m->input, m->output) : qmcu_run(m->input, m->output);
        ticks += (uint32_t)(qmcu_hal_cycles() - t0);
        if (rc == QMCU_KERNEL_UNKNOWN && kernel) {
            *o = begin(s, QMCU_ERR_NO_KERNEL);
            put_text(o, "kernel ");
            put_dec(o, (int32_t)id);
            put_text(o, " is not implemented by model ");
            put_text(o, m->name);
            return QMCU_ERR_NO_KERNEL;
        }
        if (rc != 0) {
            *o = begin(s, QMCU_ERR_MODEL);
            put_text(o, kernel ? "qmcu_run_kernel returned " : "qmcu_run returned ");
            put_dec(o, rc);
            put_text(o, " on run ");
            put_dec(o, (int32_t)r);
            return QMCU_ERR_MODEL;
        }
    }
    put_u32(o, r);
    put_u64(o, ticks);
    return QMCU_OK;
}

static out_t fail(qmcu_server_t *s, uint8_t status, const char *msg) {
    out_t o = begin(s, status);
    put_text(&o, msg);
    return o;
}

/* A copy of the last run request executed (same type, sequence number and CRC-32, nothing
 * executed in between) is answered with the same answer instead of running again: a resend
 * of a run whose answer was lost costs a frame, not another inference. */
static int replay_run(qmcu_server_t *s, const qmcu_frame_t *f, uint32_t crc) {
    if (!s->last_run.valid || f->type != s->last_run.type || f->seq != s->last_run.seq ||
        crc != s->last_run.crc)
        return 0;
    out_t o = empty(s);
    for (size_t i = 0; i < s->last_run.len; i++) put_u8(&o, s->last_run.answer[i]);
    s->runs_replayed++;
    reply(s, (uint8_t)(f->type | QMCU_RESPONSE_FLAG), f->seq, &o);
    return 1;
}

static void remember_run(qmcu_server_t *s, const qmcu_frame_t *f, uint32_t crc,
                         const out_t *o) {
    if (o->n > sizeof s->last_run.answer) return;      /* (an error message: not kept) */
    memcpy(s->last_run.answer, o->p, o->n);
    s->last_run.len = (uint8_t)o->n;
    s->last_run.type = f->type;
    s->last_run.seq = f->seq;
    s->last_run.crc = crc;
    s->last_run.valid = 1;
}

static void execute(qmcu_server_t *s, const qmcu_frame_t *f) {
    const qmcu_model_desc_t *m = s->model;
    const uint8_t *p = f->payload;
    /* the frame's CRC-32 (checked by the parser) follows the payload in the parser's buffer */
    const uint32_t crc = get_u32(p + f->len);
    const int is_run = f->type == QMCU_CMD_RUN || f->type == QMCU_CMD_RUN_KERNEL;
    if (is_run && replay_run(s, f, crc)) return;
    s->last_run.valid = 0;
    out_t o = begin(s, QMCU_OK);
    switch (f->type) {
    case QMCU_CMD_PING:
        for (size_t i = 0; i < f->len; i++) put_u8(&o, p[i]);   /* cut to the frame size */
        break;
    case QMCU_CMD_INFO:
        cmd_info(s, &o);
        break;
    case QMCU_CMD_WRITE_INPUT: {
        if (f->len < 4) {
            o = fail(s, QMCU_ERR_BAD_ARGUMENTS, "write_input needs a u32 offset");
            break;
        }
        uint32_t off = get_u32(p), n = f->len - 4u;
        if ((uint64_t)off + n > m->input_bytes) {
            o = fail(s, QMCU_ERR_OUT_OF_RANGE, "write_input past the end of the input (");
            put_dec(&o, (int32_t)m->input_bytes);
            put_text(&o, " bytes)");
            break;
        }
        memcpy(m->input + off, p + 4, n);
        break;
    }
    case QMCU_CMD_READ_OUTPUT: {
        if (f->len != 6) {
            o = fail(s, QMCU_ERR_BAD_ARGUMENTS, "read_output needs u32 offset, u16 length");
            break;
        }
        uint32_t off = get_u32(p), n = (uint32_t)(p[4] | (p[5] << 8));
        if ((uint64_t)off + n > m->output_bytes || payload_too_long(n + QMCU_ANSWER_HEAD_BYTES)) {
            o = fail(s, QMCU_ERR_OUT_OF_RANGE, "read_output past the end of the output (");
            put_dec(&o, (int32_t)m->output_bytes);
            put_text(&o, " bytes) or above the frame size");
            break;
        }
        for (uint32_t i = 0; i < n; i++) put_u8(&o, m->output[off + i]);
        break;
    }
    case QMCU_CMD_RUN:
    case QMCU_CMD_RUN_KERNEL: {
        int kernel = f->type == QMCU_CMD_RUN_KERNEL;
        size_t base = kernel ? 4u : 0u;
        if (f->len != base && f->len != base + 4u) {
            o = fail(s, QMCU_ERR_BAD_ARGUMENTS,
                      kernel ? "run_kernel needs u32 id [, u32 repeat]" : "run takes [u32 repeat]");
            break;
        }
        uint32_t id = kernel ? get_u32(p) : 0u;
        uint32_t repeat = f->len == base + 4u ? get_u32(p + base) : 1u;
        if (repeat == 0 || repeat > QMCU_MAX_REPEAT) {
            o = fail(s, QMCU_ERR_BAD_ARGUMENTS, "repeat must be within 1..");
            put_dec(&o, (int32_t)QMCU_MAX_REPEAT);
            break;
        }
        if (kernel && id >= m->n_kernels) {
            o = fail(s, QMCU_ERR_NO_KERNEL, "kernel id ");
            put_dec(&o, (int32_t)id);
            put_text(&o, " out of range: model has ");
            put_dec(&o, (int32_t)m->n_kernels);
            put_text(&o, " kernels");
            break;
        }
        timed_runs(s, &o, kernel, id, repeat);
        remember_run(s, f, crc, &o);
        break;
    }
    case QMCU_CMD_RESET:
        memset(m->input, 0, m->input_bytes);
        memset(m->output, 0, m->output_bytes);
        break;
    default:
        o = fail(s, QMCU_ERR_UNKNOWN_COMMAND, "unknown command ");
        put_hex8(&o, f->type);
        break;
    }
    reply(s, (uint8_t)(f->type | QMCU_RESPONSE_FLAG), f->seq, &o);
}

void qmcu_server_init(qmcu_server_t *s, const qmcu_model_desc_t *model) {
    qmcu_parser_reset(&s->parser);
    s->model = model;
    s->frames_ok = 0;
    s->frames_bad = 0;
    s->boot_id = qmcu_hal_entropy();
    s->seeded = 0;
    s->last_run.valid = 0;
    s->runs_replayed = 0;
}

static void nak(qmcu_server_t *s, uint8_t seq, uint8_t reason) {
    out_t o = empty(s);
    put_u8(&o, reason);
    reply(s, QMCU_TYPE_NAK, seq, &o);
}

static void answer_event(qmcu_server_t *s, qmcu_event_t ev, const qmcu_frame_t *fp);

void qmcu_server_feed(qmcu_server_t *s, uint8_t byte) {
    qmcu_frame_t f;
    if (!s->seeded) {
        /* when the host's first byte arrives depends on the host: under a deterministic
         * emulator this is what makes two boots' ids differ */
        s->boot_id = mix32(s->boot_id ^ mix32(qmcu_hal_entropy()));
        if (s->boot_id == 0) s->boot_id = 1;
        s->seeded = 1;
    }
    answer_event(s, qmcu_parser_feed(&s->parser, byte, &f), &f);
}

int qmcu_server_receiving(const qmcu_server_t *s) {
    return s->parser.n != 0 || s->parser.skipped != 0;
}

void qmcu_server_link_quiet(qmcu_server_t *s) {
    qmcu_frame_t f;
    answer_event(s, qmcu_parser_abandon(&s->parser, &f), &f);
}

static void answer_event(qmcu_server_t *s, qmcu_event_t ev, const qmcu_frame_t *fp) {
    const qmcu_frame_t f = *fp;
    out_t o;
    switch (ev) {
    case QMCU_EV_FRAME:
        s->frames_ok++;
        execute(s, &f);
        break;
    case QMCU_EV_BAD_CRC:
    case QMCU_EV_TOO_LONG:
        s->frames_bad++;
        nak(s, f.seq, payload_too_long(f.len) ? QMCU_NAK_TOO_LONG : QMCU_NAK_BAD_CRC);
        break;
    case QMCU_EV_TRUNCATED:
        s->frames_bad++;
        nak(s, f.seq, QMCU_NAK_TRUNCATED);
        break;
    case QMCU_EV_BAD_VERSION:
        s->frames_bad++;
        o = fail(s, QMCU_ERR_BAD_VERSION, "protocol version ");
        put_dec(&o, f.version);
        put_text(&o, " not supported; this firmware speaks version ");
        put_dec(&o, QMCU_PROTO_VERSION);
        reply(s, (uint8_t)(f.type | QMCU_RESPONSE_FLAG), f.seq, &o);
        break;
    case QMCU_EV_BAD_HEADER:
        /* Tell the host at once that something arrived damaged, so it resends without
         * waiting for its timeout. */
        s->frames_bad++;
        nak(s, 0, QMCU_NAK_BAD_HEADER);
        break;
    default:
        break;
    }
}

void qmcu_server_announce(qmcu_server_t *s) {
    out_t o = empty(s);
    put_text(&o, "qmcu");
    put_u8(&o, QMCU_PROTO_VERSION);
    reply(s, QMCU_TYPE_HELLO, 0, &o);
}

static qmcu_server_t server;

int qmcu_serve_forever(void) {
    qmcu_server_init(&server, qmcu_model_describe());
    qmcu_server_announce(&server);
    for (;;) {
        int c = qmcu_server_receiving(&server) ? qmcu_hal_getc_timeout(QMCU_BYTE_TIMEOUT_MS)
                                                : qmcu_hal_getc();
        if (c == QMCU_HAL_TIMEOUT) {
            qmcu_server_link_quiet(&server);
            continue;
        }
        if (c < 0) return 0;
        qmcu_server_feed(&server, (uint8_t)c);
    }
}
