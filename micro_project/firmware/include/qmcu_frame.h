/* Frame checksums, the streaming frame parser and the frame encoder. */
#ifndef QMCU_FRAME_H
#define QMCU_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "qmcu_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

uint8_t qmcu_crc8(const uint8_t *data, size_t len);
uint32_t qmcu_crc32(uint32_t crc, const uint8_t *data, size_t len);

typedef enum {
    QMCU_EV_NONE = 0,      /* byte consumed, nothing complete yet */
    QMCU_EV_FRAME,         /* a valid frame is in `frame` */
    QMCU_EV_BAD_CRC,       /* header valid, payload CRC wrong: frame.type/seq are known */
    QMCU_EV_TOO_LONG,      /* header valid, length above QMCU_MAX_PAYLOAD */
    QMCU_EV_BAD_VERSION,   /* header valid, protocol version not ours */
    QMCU_EV_BAD_HEADER,    /* header CRC wrong: resynchronising on the next sync byte */
    QMCU_EV_TRUNCATED      /* a partial frame was dropped (qmcu_parser_abandon) */
} qmcu_event_t;

typedef struct {
    uint8_t version;
    uint8_t type;
    uint8_t seq;
    uint16_t len;
    const uint8_t *payload;   /* points into the parser's buffer; valid until the next feed */
} qmcu_frame_t;

typedef struct {
    uint8_t buf[QMCU_FRAME_MAX];
    size_t n;                 /* bytes held in buf */
    size_t need;              /* total frame bytes once the header is valid, else 0 */
    size_t skipped;           /* bytes skipped outside frames since the last event (idle
                                 fill bytes QMCU_IDLE are not counted) */
} qmcu_parser_t;

void qmcu_parser_reset(qmcu_parser_t *p);

/* Feed one byte; on an event other than NONE, `frame` describes what was seen. */
qmcu_event_t qmcu_parser_feed(qmcu_parser_t *p, uint8_t byte, qmcu_frame_t *frame);

/* The link went quiet: drop any partial frame. Returns QMCU_EV_TRUNCATED when bytes were held
 * or skipped since the last event (a frame whose sync byte was lost is all skipped bytes):
 * frame->seq is the frame's if its header was complete and valid, else 0. Otherwise NONE. */
qmcu_event_t qmcu_parser_abandon(qmcu_parser_t *p, qmcu_frame_t *frame);

/* Encode a frame into out (capacity cap). Returns the frame length, or 0 if it does not fit. */
size_t qmcu_frame_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t seq,
                         const uint8_t *payload, size_t len);

#ifdef __cplusplus
}
#endif
#endif
