/* Wire format of the host <-> device RPC (micro_project/PROTOCOL.md is the specification;
 * micro_project/protocol.py is the host side and must agree byte for byte).
 *
 *   offset  size  field
 *   0       1     sync 0xA5
 *   1       1     protocol version (QMCU_PROTO_VERSION)
 *   2       1     type: command (host->device) or command|0x80 / NAK (device->host)
 *   3       1     sequence number (the response echoes the request's)
 *   4       2     payload length, little endian (<= QMCU_MAX_PAYLOAD)
 *   6       1     CRC-8 (poly 0x07, init 0) of bytes 0..5
 *   7       len   payload
 *   7+len   4     CRC-32 (IEEE, zlib) of bytes 0..6+len, little endian
 */
#ifndef QMCU_PROTOCOL_H
#define QMCU_PROTOCOL_H

#define QMCU_SYNC 0xA5u
/* Idle fill: the host follows each request with a few of these. Outside a frame they are
 * ignored; after a request that lost a byte they complete it at once (it then fails its CRC-32
 * and is NAKed), so a lost byte costs a round trip instead of the inter-byte timeout. */
#define QMCU_IDLE 0x00u
#define QMCU_PROTO_VERSION 2u
#define QMCU_HEADER_BYTES 7u
#define QMCU_TRAILER_BYTES 4u

#ifndef QMCU_MAX_PAYLOAD
#define QMCU_MAX_PAYLOAD 512u
#endif
#if QMCU_MAX_PAYLOAD < 64 || QMCU_MAX_PAYLOAD > 65535
#error "QMCU_MAX_PAYLOAD must be within 64..65535"
#endif
/* Upper bound of `repeat` in RUN / RUN_KERNEL. */
#ifndef QMCU_MAX_REPEAT
#define QMCU_MAX_REPEAT 100000u
#endif
/* No request occupies the device for long: a repeated run stops once this much counter time
 * has passed (after at least one run) and answers the number of runs it did. */
#ifndef QMCU_MAX_RUN_MS
#define QMCU_MAX_RUN_MS 2000u
#endif
/* A partial frame is dropped (and NAKed as TRUNCATED) when its next byte does not come within
 * this many milliseconds of counter time, so one lost byte costs milliseconds, not a timeout. */
#ifndef QMCU_BYTE_TIMEOUT_MS
#define QMCU_BYTE_TIMEOUT_MS 200u
#endif

#define QMCU_FRAME_MAX (QMCU_HEADER_BYTES + QMCU_MAX_PAYLOAD + QMCU_TRAILER_BYTES)

/* Commands */
#define QMCU_CMD_PING 0x01u        /* payload echoed back */
#define QMCU_CMD_INFO 0x02u        /* board, model, sizes, counter */
#define QMCU_CMD_WRITE_INPUT 0x03u /* u32 offset, bytes */
#define QMCU_CMD_RUN 0x04u         /* [u32 repeat] -> u32 repeat, u64 ticks */
#define QMCU_CMD_READ_OUTPUT 0x05u /* u32 offset, u16 length -> bytes */
#define QMCU_CMD_RUN_KERNEL 0x06u  /* u32 kernel id, [u32 repeat] -> u32 repeat, u64 ticks */
#define QMCU_CMD_RESET 0x07u       /* zero the input and output buffers */

#define QMCU_RESPONSE_FLAG 0x80u
#define QMCU_TYPE_NAK 0xFEu        /* payload: u8 reason; the host resends the request */
#define QMCU_TYPE_HELLO 0xFDu      /* sent once at boot, seq 0: "qmcu" + u8 protocol version */

/* NAK reasons */
#define QMCU_NAK_BAD_CRC 1u
#define QMCU_NAK_TOO_LONG 2u
#define QMCU_NAK_BAD_HEADER 3u     /* sent with seq 0: a header failed its CRC-8 */
#define QMCU_NAK_TRUNCATED 4u      /* a frame stopped short (inter-byte timeout); seq 0 if
                                      its header was not complete */

/* Every answer payload: u8 status, u32 boot id (drawn at reset: an answer from another boot
 * tells the host that the device lost its input and output), then the result, or for a
 * non-zero status a message. */
#define QMCU_ANSWER_HEAD_BYTES 5u
#define QMCU_OK 0u
#define QMCU_ERR_UNKNOWN_COMMAND 1u
#define QMCU_ERR_BAD_ARGUMENTS 2u
#define QMCU_ERR_OUT_OF_RANGE 3u
#define QMCU_ERR_MODEL 4u
#define QMCU_ERR_NO_KERNEL 5u
#define QMCU_ERR_BAD_VERSION 6u

#endif
