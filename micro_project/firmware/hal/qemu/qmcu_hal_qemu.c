/* QEMU bare-metal HAL on top of the board layer (micro_project/boards/hal.h): CMSDK UART0 for
 * the link, the board's timer as the counter (deterministic under -icount), semihosting exit. */
#include "hal.h"
#include "qmcu_hal.h"

#ifndef QMCU_BOARD_NAME
#define QMCU_BOARD_NAME "qemu"
#endif
#ifndef QMCU_TIMER_HZ
#define QMCU_TIMER_HZ 25000000u
#endif
#ifndef QMCU_COUNTER_NAME
#define QMCU_COUNTER_NAME "cmsdk-timer0"
#endif

/* The reset handler already called hal_init(). One read of the UART data register makes QEMU
 * look at its input again: under -icount its main loop may otherwise never notice that the
 * receiver was switched on, and every byte the host sends stays queued forever. */
void qmcu_hal_init(void) {
    (void)*(volatile uint32_t *)(HAL_UART_BASE + 0x00u);
}

int qmcu_hal_getc(void) { return hal_uart_getc(); }

/* Timed on the board timer: under -icount that is guest time, so the timeout is a number of
 * polling instructions (deterministic, independent of the host's load). */
int qmcu_hal_getc_timeout(uint32_t ms) {
    const uint32_t t0 = hal_timer_read(), limit = ms * (QMCU_TIMER_HZ / 1000u);
    for (;;) {
        int c = hal_uart_poll();
        if (c >= 0) return c;
        if (hal_timer_read() - t0 > limit) return QMCU_HAL_TIMEOUT;
    }
}

void qmcu_hal_write(const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) hal_uart_putc((char)data[i]);
}

/* qmcu_hal_cycles() is called only at the borders of timed regions: the QEMU cycles plugin
 * counts from its entry (micro_project/qemu_plugin), so the other timer reads use
 * hal_timer_read() directly. */
uint32_t qmcu_hal_cycles(void) { return hal_timer_read(); }
uint32_t qmcu_hal_entropy(void) { return hal_timer_read(); }
uint32_t qmcu_hal_counter_hz(void) { return QMCU_TIMER_HZ; }
const char *qmcu_hal_counter_name(void) { return QMCU_COUNTER_NAME; }
const char *qmcu_hal_board(void) { return QMCU_BOARD_NAME; }
void qmcu_hal_exit(int code) { hal_exit(code); }
