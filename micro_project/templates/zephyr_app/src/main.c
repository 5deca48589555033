/* Zephyr entry point: serve the RPC on the board's UART until reset. */
#include <zephyr/kernel.h>

#include "qmcu_hal.h"
#include "qmcu_server.h"

int main(void)
{
	qmcu_hal_init();
	qmcu_serve_forever();
	return 0;
}
