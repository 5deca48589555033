/* Zephyr HAL of the firmware core: the UART chosen as `qmcu,rpc-uart` (board overlays), else the
 * console UART, driven with the polling API; the kernel's hardware cycle counter for timing.
 * Only stable APIs: uart_poll_in/out, device_is_ready, k_cycle_get_32, k_yield,
 * sys_clock_hw_cycles_per_sec. */
#include <zephyr/device.h>
#include <zephyr/drivers/uart.h>
#include <zephyr/kernel.h>

#include "qmcu_hal.h"

#if DT_HAS_CHOSEN(qmcu_rpc_uart)
#define QMCU_UART_NODE DT_CHOSEN(qmcu_rpc_uart)
#else
#define QMCU_UART_NODE DT_CHOSEN(zephyr_console)
#endif

static const struct device *const rpc_uart = DEVICE_DT_GET(QMCU_UART_NODE);

void qmcu_hal_init(void)
{
	while (!device_is_ready(rpc_uart)) {
		k_yield();
	}
}

int qmcu_hal_getc(void)
{
	unsigned char c;

	while (uart_poll_in(rpc_uart, &c) != 0) {
		k_yield();
	}
	return c;
}

/* The core drops a frame whose bytes stop coming (protocol 2): wait at most `ms`. */
int qmcu_hal_getc_timeout(uint32_t ms)
{
	const uint32_t t0 = k_cycle_get_32();
	const uint32_t limit = ms * ((uint32_t)sys_clock_hw_cycles_per_sec() / 1000u);
	unsigned char c;

	while (uart_poll_in(rpc_uart, &c) != 0) {
		if (k_cycle_get_32() - t0 > limit) {
			return QMCU_HAL_TIMEOUT;
		}
		k_yield();
	}
	return c;
}

void qmcu_hal_write(const uint8_t *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uart_poll_out(rpc_uart, data[i]);
	}
}

uint32_t qmcu_hal_cycles(void)
{
	return k_cycle_get_32();
}

uint32_t qmcu_hal_counter_hz(void)
{
	return (uint32_t)sys_clock_hw_cycles_per_sec();
}

const char *qmcu_hal_counter_name(void)
{
	return "zephyr-k_cycle_get_32";
}

const char *qmcu_hal_board(void)
{
#ifdef CONFIG_BOARD_TARGET
	return CONFIG_BOARD_TARGET; /* Zephyr >= 3.7: "mps2/an385" (CONFIG_BOARD is "mps2") */
#else
	return CONFIG_BOARD;
#endif
}

void qmcu_hal_exit(int code)
{
	/* A board has nowhere to return to: stop serving and idle. */
	(void)code;
	for (;;) {
		k_sleep(K_FOREVER);
	}
}
