/* Implementations behind the stub headers. With STUB_HOST_PIPES the UART is the process's
 * stdin/stdout (the app then serves the RPC on a host, like the host template); otherwise the
 * functions do nothing (a link check for Cortex-M builds). */
#ifdef STUB_HOST_PIPES
#define _POSIX_C_SOURCE 200809L
#endif
#include <zephyr/device.h>
#include <zephyr/drivers/uart.h>
#include <zephyr/kernel.h>

const struct device STUB_RPC_DEVICE = {STUB_RPC_DEVICE_NAME, 0, 0, 0};

#ifdef STUB_HOST_PIPES
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int uart_poll_in(const struct device *dev, unsigned char *p_char) {
	(void)dev;
	ssize_t n = read(0, p_char, 1);
	if (n == 0) exit(0);
	return n == 1 ? 0 : -1;
}
void uart_poll_out(const struct device *dev, unsigned char c) {
	(void)dev;
	if (write(1, &c, 1) != 1) exit(3);
}
uint32_t k_cycle_get_32(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)(ts.tv_sec * 1000000u + ts.tv_nsec / 1000);
}
int sys_clock_hw_cycles_per_sec(void) { return 1000000; }
int32_t k_sleep(k_timeout_t timeout) { (void)timeout; exit(0); }
#else
int uart_poll_in(const struct device *dev, unsigned char *p_char) {
	(void)dev;
	*p_char = 0;
	return -1;
}
void uart_poll_out(const struct device *dev, unsigned char c) { (void)dev; (void)c; }
uint32_t k_cycle_get_32(void) { return 0; }
int sys_clock_hw_cycles_per_sec(void) { return 1; }
int32_t k_sleep(k_timeout_t timeout) { (void)timeout; return 0; }
#endif
void k_yield(void) {}
bool device_is_ready(const struct device *dev) { return dev != 0; }
