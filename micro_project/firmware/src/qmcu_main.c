/* Entry point of the host and bare-metal templates (Zephyr has its own main.c). */
#include "qmcu_hal.h"
#include "qmcu_server.h"

int main(void) {
    qmcu_hal_init();
    return qmcu_serve_forever();
}
