/* What the firmware core needs from a platform: a byte link, a cycle counter, an exit.
 *
 * Each template implements this in one small file (hal/host, hal/qemu, zephyr/src). */
#ifndef QMCU_FIRMWARE_HAL_H
#define QMCU_FIRMWARE_HAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void qmcu_hal_init(void);

/* Blocking read of one byte from the host link; -1 when the link is closed for good. */
int qmcu_hal_getc(void);

/* Read one byte, waiting at most `ms` milliseconds: the byte, QMCU_HAL_CLOSED or
 * QMCU_HAL_TIMEOUT. Optional: the core links a default that waits for ever (qmcu_hal_getc). */
#define QMCU_HAL_CLOSED (-1)
#define QMCU_HAL_TIMEOUT (-2)
int qmcu_hal_getc_timeout(uint32_t ms);

/* Something that differs between boots (a seed for the boot id). Optional: the core's default
 * is the counter, read at reset and again when the first byte arrives. */
uint32_t qmcu_hal_entropy(void);

/* Write bytes to the host link (blocking until queued). */
void qmcu_hal_write(const uint8_t *data, size_t len);

/* Free-running up-counter. A measured interval must be shorter than 2^32 ticks. Called only
 * at the borders of timed regions (on QEMU its calls mark them for the cycles plugin). */
uint32_t qmcu_hal_cycles(void);

/* Counter frequency in Hz and what it counts (reported by the INFO command). */
uint32_t qmcu_hal_counter_hz(void);
const char *qmcu_hal_counter_name(void);

/* Board name reported by INFO. */
const char *qmcu_hal_board(void);

/* Stop the program with a status (QEMU: semihosting exit; host: exit()). */
void qmcu_hal_exit(int code);

#ifdef __cplusplus
}
#endif
#endif
