/* Frame checksums, parser and encoder (format: qmcu_protocol.h). The parser is byte-driven and
 * holds at most one frame, so it runs on any UART without interrupts or a heap. */
#include "qmcu_frame.h"

#include <string.h>

uint8_t qmcu_crc8(const uint8_t *data, size_t len) {
    uint8_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        for (int b = 0; b < 8; b++) {
            unsigned shifted = (unsigned)crc << 1;
            crc = (uint8_t)((crc & 0x80u) ? shifted ^ 0x07u : shifted);
        }
    }
    return crc;
}

/* Reflected CRC-32 (poly 0xEDB88320), nibble table: 64 bytes of flash, same result as zlib. */
static const uint32_t crc32_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t qmcu_crc32(uint32_t crc, const uint8_t *data, size_t len) {
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc32_nibble[crc & 0xFu];
        crc = (crc >> 4) ^ crc32_nibble[crc & 0xFu];
    }
    return ~crc;
}

void qmcu_parser_reset(qmcu_parser_t *p) {
    p->n = 0;
    p->need = 0;
    p->skipped = 0;
}

/* Drop the first held byte and restart at the next sync byte among those held, so a frame
 * whose start hid behind a corrupted header is not lost. */
static void resync(qmcu_parser_t *p) {
    size_t i = 1;
    while (i < p->n && p->buf[i] != QMCU_SYNC) i++;
    memmove(p->buf, p->buf + i, p->n - i);
    p->n -= i;
    p->need = 0;
    p->skipped = 0;           /* reported (BAD_HEADER) */
}

/* (a function, so that QMCU_MAX_PAYLOAD 65535 draws no "comparison always false" warning) */
static int too_long(uint32_t len) { return len > QMCU_MAX_PAYLOAD; }

static void describe(const qmcu_parser_t *p, qmcu_frame_t *f) {
    f->version = p->buf[1];
    f->type = p->buf[2];
    f->seq = p->buf[3];
    f->len = (uint16_t)(p->buf[4] | (p->buf[5] << 8));
    f->payload = p->buf + QMCU_HEADER_BYTES;
}

qmcu_event_t qmcu_parser_feed(qmcu_parser_t *p, uint8_t byte, qmcu_frame_t *frame) {
    if (p->n == 0 && byte != QMCU_SYNC) {
        if (byte != QMCU_IDLE) p->skipped++;
        return QMCU_EV_NONE;
    }
    p->buf[p->n++] = byte;
    if (p->need == 0) {
        if (p->n < QMCU_HEADER_BYTES) return QMCU_EV_NONE;
        if (qmcu_crc8(p->buf, QMCU_HEADER_BYTES - 1) != p->buf[QMCU_HEADER_BYTES - 1]) {
            resync(p);
            return QMCU_EV_BAD_HEADER;
        }
        describe(p, frame);
        if (frame->version != QMCU_PROTO_VERSION) {
            qmcu_parser_reset(p);
            return QMCU_EV_BAD_VERSION;
        }
        if (too_long(frame->len)) {
            qmcu_parser_reset(p);
            return QMCU_EV_TOO_LONG;
        }
        p->need = QMCU_HEADER_BYTES + frame->len + QMCU_TRAILER_BYTES;
        return QMCU_EV_NONE;
    }
    if (p->n < p->need) return QMCU_EV_NONE;
    describe(p, frame);
    size_t body = p->need - QMCU_TRAILER_BYTES;
    const uint8_t *t = p->buf + body;
    uint32_t got = (uint32_t)t[0] | ((uint32_t)t[1] << 8) | ((uint32_t)t[2] << 16) |
                   ((uint32_t)t[3] << 24);
    qmcu_parser_reset(p);     /* the buffer stays intact until the next feed */
    return qmcu_crc32(0, p->buf, body) == got ? QMCU_EV_FRAME : QMCU_EV_BAD_CRC;
}

qmcu_event_t qmcu_parser_abandon(qmcu_parser_t *p, qmcu_frame_t *frame) {
    if (p->n == 0 && p->skipped == 0) return QMCU_EV_NONE;
    frame->seq = 0;
    frame->len = 0;
    if (p->need) describe(p, frame);    /* header complete and valid: its seq is known */
    qmcu_parser_reset(p);
    return QMCU_EV_TRUNCATED;
}

size_t qmcu_frame_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t seq,
                         const uint8_t *payload, size_t len) {
    size_t total = QMCU_HEADER_BYTES + len + QMCU_TRAILER_BYTES;
    if (len > QMCU_MAX_PAYLOAD || total > cap) return 0;
    out[0] = QMCU_SYNC;
    out[1] = QMCU_PROTO_VERSION;
    out[2] = type;
    out[3] = seq;
    out[4] = (uint8_t)(len & 0xFFu);
    out[5] = (uint8_t)(len >> 8);
    out[6] = qmcu_crc8(out, QMCU_HEADER_BYTES - 1);
    if (len && payload != out + QMCU_HEADER_BYTES) memmove(out + QMCU_HEADER_BYTES, payload, len);
    uint32_t crc = qmcu_crc32(0, out, QMCU_HEADER_BYTES + len);
    uint8_t *t = out + QMCU_HEADER_BYTES + len;
    t[0] = (uint8_t)crc;
    t[1] = (uint8_t)(crc >> 8);
    t[2] = (uint8_t)(crc >> 16);
    t[3] = (uint8_t)(crc >> 24);
    return total;
}
