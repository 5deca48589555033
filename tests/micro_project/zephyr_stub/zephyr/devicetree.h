/* Stand-in for <zephyr/devicetree.h>: DT_CHOSEN / DT_HAS_CHOSEN over a generated table
 * (stub_devicetree_generated.h, written by the test from the board overlay). */
#ifndef STUB_ZEPHYR_DEVICETREE_H
#define STUB_ZEPHYR_DEVICETREE_H
#define STUB_CAT(a, b) STUB_CAT_(a, b)
#define STUB_CAT_(a, b) a##b
#define DT_CHOSEN(prop) STUB_CAT(DT_CHOSEN_, prop)
#define DT_HAS_CHOSEN(prop) STUB_CAT(STUB_CAT(DT_CHOSEN_, prop), _EXISTS)
#include "stub_devicetree_generated.h"
#endif
