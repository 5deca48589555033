/* The RPC server: parses frames from the host link, runs commands against the model, answers. */
#ifndef QMCU_SERVER_H
#define QMCU_SERVER_H

#include <stdint.h>

#include "qmcu_frame.h"
#include "qmcu_model_api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    qmcu_parser_t parser;
    uint8_t tx[QMCU_FRAME_MAX];
    const qmcu_model_desc_t *model;
    uint32_t frames_ok;       /* frames executed */
    uint32_t frames_bad;      /* frames refused (CRC, length, version, truncated) */
    uint32_t boot_id;         /* in every answer: differs from one boot to the next */
    int seeded;               /* boot_id has taken in the first byte's arrival time */
    /* The last run executed (RUN / RUN_KERNEL) and its answer: a copy of that same request
     * (the host resends one whose answer it lost) is answered from here, not run again. */
    struct {
        uint8_t valid, type, seq, len;
        uint32_t crc;
        uint8_t answer[QMCU_ANSWER_HEAD_BYTES + 12u];
    } last_run;
    uint32_t runs_replayed;
} qmcu_server_t;

void qmcu_server_init(qmcu_server_t *s, const qmcu_model_desc_t *model);

/* Announce the server on the link (a HELLO frame): the host waits for it after a boot before
 * it sends anything, since an emulated UART may lose bytes that arrive before it is on. */
void qmcu_server_announce(qmcu_server_t *s);

/* Feed one received byte; a complete frame is executed and answered through qmcu_hal_write. */
void qmcu_server_feed(qmcu_server_t *s, uint8_t byte);

/* Whether a frame is partly received, or bytes outside frames were skipped (the caller then
 * reads with a timeout). */
int qmcu_server_receiving(const qmcu_server_t *s);

/* No byte came within QMCU_BYTE_TIMEOUT_MS: drop the partial frame (or the skipped bytes) and
 * NAK it (TRUNCATED). */
void qmcu_server_link_quiet(qmcu_server_t *s);

/* Serve the host link until it closes (qmcu_hal_getc() < 0). Returns 0. */
int qmcu_serve_forever(void);

#ifdef __cplusplus
}
#endif
#endif
