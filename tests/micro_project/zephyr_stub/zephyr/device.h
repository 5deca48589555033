/* Stand-in for <zephyr/device.h>. */
#ifndef STUB_ZEPHYR_DEVICE_H
#define STUB_ZEPHYR_DEVICE_H
#include <stdbool.h>
#include <zephyr/devicetree.h>

struct device {
	const char *name;
	const void *config;
	const void *api;
	void *data;
};
#define DEVICE_DT_GET(node_id) (&STUB_CAT(__device_, node_id))
bool device_is_ready(const struct device *dev);
#endif
