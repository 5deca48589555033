/* Support routines of generated models: copies between patch windows and whole tensors, the
 * VDPC outlier check, and the in-place re-expression of an 8-bit feature map in the low-bit
 * branch's quantization (bit-exact with tvm_quantmcu.quant.requant_int). Header-only so a
 * generated model is one translation unit plus its kernels. */
#ifndef QMCU_MODEL_RT_H
#define QMCU_MODEL_RT_H

#include <stdint.h>
#include <string.h>

/* Copy an h x w box starting at (h0, w0) of a tensor with `src_w` pixels per row into a dense
 * buffer; `px` bytes per pixel. */
static inline void qmcu_copy_box_out(uint8_t *dst, const uint8_t *src, int32_t src_w,
                                     int32_t h0, int32_t w0, int32_t h, int32_t w, int32_t px) {
    for (int32_t r = 0; r < h; ++r)
        memcpy(dst + (size_t)r * w * px, src + ((size_t)(h0 + r) * src_w + w0) * px,
               (size_t)w * px);
}

/* Copy an h x w box starting at (sh0, sw0) of a buffer with `src_w` pixels per row to
 * (dh0, dw0) of a buffer with `dst_w` pixels per row. */
static inline void qmcu_copy_box(uint8_t *dst, int32_t dst_w, int32_t dh0, int32_t dw0,
                                 const uint8_t *src, int32_t src_w, int32_t sh0, int32_t sw0,
                                 int32_t h, int32_t w, int32_t px) {
    for (int32_t r = 0; r < h; ++r)
        memcpy(dst + ((size_t)(dh0 + r) * dst_w + dw0) * px,
               src + ((size_t)(sh0 + r) * src_w + sw0) * px, (size_t)w * px);
}

/* VDPC: 1 when some value of the box is >= hi or <= lo (an outlier patch), else 0. The map is
 * 8-bit, `c` bytes per pixel, `map_w` pixels per row. lo = -1 disables the low-side test. */
static inline int qmcu_vdpc_outlier(const uint8_t *map, int32_t map_w, int32_t c, int32_t h0,
                                    int32_t w0, int32_t h, int32_t w, int32_t hi, int32_t lo) {
    for (int32_t r = 0; r < h; ++r) {
        const uint8_t *row = map + ((size_t)(h0 + r) * map_w + w0) * c;
        for (int32_t i = 0; i < w * c; ++i)
            if ((int32_t)row[i] >= hi || (int32_t)row[i] <= lo)
                return 1;
    }
    return 0;
}

/* Re-express `pixels` pixels of an 8-bit map (c channels) in another quantization and pack
 * them at `bits`, in place: y = clamp(floor(((q - zp_src)·M + 2^(n-1)) / 2^n) + zp_dst, 0,
 * 2^bits - 1). Packed bytes never run ahead of the values still to be read. */
static inline void qmcu_requant_map(uint8_t *buf, int32_t pixels, int32_t c, int32_t zp_src,
                                    int32_t mult, int32_t shift, int32_t zp_dst, int32_t bits) {
    const int32_t per = 8 / bits, qmax = (1 << bits) - 1;
    const int32_t out_px = (c * bits + 7) / 8;
    const int64_t round = (int64_t)1 << (shift - 1);
    for (int32_t p = 0; p < pixels; ++p) {
        const uint8_t *src = buf + (size_t)p * c;
        uint8_t *dst = buf + (size_t)p * out_px;
        for (int32_t j = 0; j < out_px; ++j) {
            uint32_t byte = 0;
            for (int32_t lane = 0; lane < per; ++lane) {
                const int32_t ch = j * per + lane;
                if (ch >= c)
                    break;
                int64_t v = (((int64_t)src[ch] - zp_src) * mult + round) >> shift;
                v += zp_dst;
                v = v < 0 ? 0 : (v > qmax ? qmax : v);
                byte |= (uint32_t)v << (lane * bits);
            }
            dst[j] = (uint8_t)byte;
        }
    }
}

#endif
