/* Stand-in for <zephyr/kernel.h>: the declarations the micro_project Zephyr app uses, with
 * Zephyr's signatures, so its sources compile without a Zephyr tree. */
#ifndef STUB_ZEPHYR_KERNEL_H
#define STUB_ZEPHYR_KERNEL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	int64_t ticks;
} k_timeout_t;
#define K_FOREVER ((k_timeout_t){-1})

int32_t k_sleep(k_timeout_t timeout);
void k_yield(void);
uint32_t k_cycle_get_32(void);
int sys_clock_hw_cycles_per_sec(void);
#endif
