/* CMSDK APB UART / Timer0 drivers and semihosting exit (see hal.h). */
#include "hal.h"

#ifndef HAL_UART_BASE
#error "define HAL_UART_BASE (micro_project/qemu.py passes it per board)"
#endif
#ifndef HAL_TIMER_BASE
#error "define HAL_TIMER_BASE (micro_project/qemu.py passes it per board)"
#endif

#define REG(base, off) (*(volatile uint32_t *)((base) + (off)))
#define UART_DATA REG(HAL_UART_BASE, 0x00)
#define UART_STATE REG(HAL_UART_BASE, 0x04)
#define UART_CTRL REG(HAL_UART_BASE, 0x08)
#define UART_BAUDDIV REG(HAL_UART_BASE, 0x10)
#define TIMER_CTRL REG(HAL_TIMER_BASE, 0x00)
#define TIMER_VALUE REG(HAL_TIMER_BASE, 0x04)
#define TIMER_RELOAD REG(HAL_TIMER_BASE, 0x08)

#ifdef HAL_SSE_COUNTER_CTRL
/* SSE-300 (an547): no CMSDK timer reachable; HAL_TIMER_BASE is a system timer frame whose
 * offset 0 is the low word of the system counter, enabled through its control frame. */
static uint32_t timer_start;
#endif

void hal_init(void) {
    UART_BAUDDIV = 16;
    UART_CTRL = 3;                     /* TX and RX enable */
#ifdef HAL_SSE_COUNTER_CTRL
    REG(HAL_SSE_COUNTER_CTRL, 0) = 1;  /* CNTCR.EN */
    timer_start = REG(HAL_TIMER_BASE, 0);
#else
    TIMER_CTRL = 0;
    TIMER_RELOAD = 0xFFFFFFFFu;
    TIMER_VALUE = 0xFFFFFFFFu;
    TIMER_CTRL = 1;                    /* enable; counts down from the reload value */
#endif
}

void hal_uart_putc(char c) {
    while (UART_STATE & 1u) {}         /* TX buffer full */
    UART_DATA = (uint8_t)c;
}

int hal_uart_getc(void) {
    while (!(UART_STATE & 2u)) {}      /* RX buffer empty */
    return (int)(UART_DATA & 0xFFu);
}

int hal_uart_poll(void) {
    return (UART_STATE & 2u) ? (int)(UART_DATA & 0xFFu) : -1;
}

void hal_puts(const char *s) {
    while (*s) hal_uart_putc(*s++);
}

void hal_put_u32(uint32_t v) {
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    hal_puts(&buf[i]);
}

uint32_t hal_timer_read(void) {
#ifdef HAL_SSE_COUNTER_CTRL
    return REG(HAL_TIMER_BASE, 0) - timer_start;
#else
    return 0xFFFFFFFFu - TIMER_VALUE;
#endif
}

void hal_exit(int code) {
    /* SYS_EXIT_EXTENDED (0x20) with ADP_Stopped_ApplicationExit: QEMU exits with `code`. */
    volatile uint32_t block[2] = {0x20026u, (uint32_t)code};
    register uint32_t r0 __asm__("r0") = 0x20u;
    register volatile uint32_t *r1 __asm__("r1") = block;
    __asm__ volatile("bkpt 0xAB" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {}
}

/* newlib's printf/puts write here (linked with nosys.specs). */
int _write(int fd, const char *buf, int len) {
    (void)fd;
    for (int i = 0; i < len; i++) hal_uart_putc(buf[i]);
    return len;
}
