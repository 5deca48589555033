/* Bare-metal board layer for the QEMU Arm boards (mps2-an386, mps2-an500, mps3-an547).
 *
 * The board is chosen at compile time by the defines that micro_project/qemu.py passes
 * (HAL_UART_BASE, HAL_TIMER_BASE); startup.c provides the vector table and the reset handler,
 * which calls hal_init() and main() and exits through semihosting with main's return value. */
#ifndef QMCU_HAL_H
#define QMCU_HAL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void hal_init(void);                 /* UART0 on (TX+RX), Timer0 free-running from 0 */
void hal_uart_putc(char c);
int hal_uart_getc(void);             /* blocking; returns 0..255 */
int hal_uart_poll(void);             /* a received byte 0..255, or -1 if none is waiting */
void hal_puts(const char *s);        /* no newline added */
void hal_put_u32(uint32_t v);        /* decimal */
uint32_t hal_timer_read(void);       /* Timer0 ticks since hal_init (counts up, wraps at 2^32) */
void hal_exit(int code) __attribute__((noreturn));  /* semihosting SYS_EXIT_EXTENDED */

#ifdef __cplusplus
}
#endif
#endif
