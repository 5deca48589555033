/* Host HAL: the link is the process's stdin/stdout (the host template drives it through pipes),
 * the counter is CLOCK_MONOTONIC in nanoseconds (wall time; for tests, not for benchmarks). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "qmcu_hal.h"

static uint8_t rx[4096];
static size_t rx_len, rx_pos;

void qmcu_hal_init(void) { rx_len = rx_pos = 0; }

int qmcu_hal_getc(void) {
    while (rx_pos == rx_len) {
        ssize_t n = read(0, rx, sizeof rx);
        if (n == 0) return -1;
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        rx_len = (size_t)n;
        rx_pos = 0;
    }
    return rx[rx_pos++];
}

int qmcu_hal_getc_timeout(uint32_t ms) {
    if (rx_pos == rx_len) {
        struct pollfd pfd = {0, POLLIN, 0};
        int r;
        do {
            r = poll(&pfd, 1, (int)ms);
        } while (r < 0 && errno == EINTR);
        if (r == 0) return QMCU_HAL_TIMEOUT;
    }
    return qmcu_hal_getc();
}

uint32_t qmcu_hal_entropy(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint32_t)ts.tv_nsec ^ ((uint32_t)getpid() << 16) ^ (uint32_t)ts.tv_sec;
}

void qmcu_hal_write(const uint8_t *data, size_t len) {
    while (len) {
        ssize_t n = write(1, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            exit(3);             /* host went away */
        }
        data += n;
        len -= (size_t)n;
    }
}

uint32_t qmcu_hal_cycles(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

uint32_t qmcu_hal_counter_hz(void) { return 1000000000u; }
const char *qmcu_hal_counter_name(void) { return "host-monotonic-ns"; }
const char *qmcu_hal_board(void) { return "host"; }
void qmcu_hal_exit(int code) { exit(code); }
