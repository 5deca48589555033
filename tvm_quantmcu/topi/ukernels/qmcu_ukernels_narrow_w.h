/* Micro-kernels for conv2d / pointwise / dense with 8-bit activations and sub-byte weights
 * stored at their width (4 or 2 bits; layout: topi/wnib.py). Two MACs per SMLAD, as int8:
 * the saving is flash, at the instruction cost of int8 weights.
 *
 *   weight word (32/wb offset-binary fields u = w + 2^(wb-1) >= 0), operand j of a word:
 *       (word >> j*wb) & mask     one AND with a shifted register: lanes (field j, j + 16/wb)
 *   operands 2a, 2a+1 pair with UXTB16 (x0, x2) and UXTB16 ROR 8 (x1, x3) of activation word a
 *   acc = sum x*u - 2^(wb-1) * sum x      (the window sum once per pixel, for all channels)
 *
 * After the words, one byte k per output channel: the kernel stores acc * 2^k (bias and shift
 * are prepared for it). The same C runs on any host (SMLAD, UXTB16, USADA8 emulated), so the
 * host tests exercise the arithmetic the Cortex-M runs.
 *
 * qmcu_conv_wn(y, y_pix, acc, acc_pix, x, x_row, x_pix, w, bias, mult, shift, q,
 *              npx, kh, kw, c, oc, sw, wb, ob): as qmcu_conv (qmcu_ukernels.h) at 8-bit inputs;
 * qmcu_conv_wn_acc: the sums only, added into acc (no output stage, no 2^k).
 */
#ifndef QMCU_UKERNELS_NARROW_W_H
#define QMCU_UKERNELS_NARROW_W_H
#include "qmcu_ukernels.h"

/* Activation bytes 0, 2 (ror = 0) or 1, 3 (ror = 8) as 16-bit lanes. */
QMCU_INLINE uint32_t wn_xpair(uint32_t v, int32_t ror) {
#ifdef QMCU_DSP
    return ror ? (uint32_t)uxtb16_ror8(v) : __uxtb16(v);
#else
    return (ror ? v >> 8 : v) & 0x00FF00FFu;
#endif
}

/* Sum of the four bytes of v added to s. */
QMCU_INLINE int32_t wn_bytes_sum(uint32_t v, int32_t s) {
#ifdef QMCU_DSP
    return (int32_t)__usada8(v, 0, (uint32_t)s);
#else
    return s + (int32_t)((v & 0xFF) + (v >> 8 & 0xFF) + (v >> 16 & 0xFF) + (v >> 24));
#endif
}

/* Sum of a pixel's window (all taps and channels; c is a multiple of 8). */
QMCU_INLINE int32_t wn_window_sum(const uint8_t *x, int32_t x_row, int32_t x_pix, int32_t kh,
                                  int32_t kw, int32_t c) {
    int32_t s = 0;
    for (int32_t i = 0; i < kh; i++)
        for (int32_t j = 0; j < kw; j++) {
            const uint8_t *xp = x + i * x_row + j * x_pix;
            for (int32_t g = 0; g < c; g += 4) s = wn_bytes_sum(ld32(xp + g), s);
        }
    return s;
}

/* Output channels o, o + 1 (o + 1 only if `two`) of npx pixels: accumulators added into acc,
 * scaled by 2^k when fused. s0, s1: the pixels' window sums. */
QMCU_INLINE void conv_wn_pair(int32_t *acc, int32_t acc_pix, const uint8_t *x, int32_t x_row,
                              int32_t x_pix, const uint8_t *w, int32_t o, int32_t two,
                              int32_t s0, int32_t s1, int32_t npx, int32_t kh, int32_t kw,
                              int32_t c, int32_t oc, int32_t sw, int32_t wb, int32_t fuse,
                              uint32_t m) {
    const int32_t n = 32 / wb, aw = n / 4, dx = sw * x_pix;
    const int32_t row = 4 * kh * kw * c / n;      /* bytes per output channel */
    const uint8_t *pa = w + o * row;
    int32_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
    for (int32_t i = 0; i < kh; i++)
        for (int32_t j = 0; j < kw; j++) {
            const uint8_t *xp = x + i * x_row + j * x_pix;
            for (int32_t g = 0; g < c / n; g++, pa += 4, xp += 4 * aw) {
#pragma GCC unroll 4
                for (int32_t a = 0; a < aw; a++) {
                    /* the activation lanes first, then one weight operand at a time, the
                     * second channel's word loaded after the first's operands: fewer values
                     * live at once (no accumulator spills with two pixels) */
                    const uint32_t v0 = ld32(xp + 4 * a);
                    const uint32_t v1 = npx == 2 ? ld32(xp + dx + 4 * a) : 0;
                    const uint32_t xa = wn_xpair(v0, 0), xc = wn_xpair(v0, 8);
                    const uint32_t ya = wn_xpair(v1, 0), yc = wn_xpair(v1, 8);
                    uint32_t wv = ld32(pa);
                    uint32_t op = (wv >> (2 * a * wb)) & m;
                    a0 = qmcu_smlad(xa, op, a0);
                    if (npx == 2) b0 = qmcu_smlad(ya, op, b0);
                    op = (wv >> ((2 * a + 1) * wb)) & m;
                    a0 = qmcu_smlad(xc, op, a0);
                    if (npx == 2) b0 = qmcu_smlad(yc, op, b0);
                    if (!two) continue;
                    wv = ld32(pa + row);
                    op = (wv >> (2 * a * wb)) & m;
                    a1 = qmcu_smlad(xa, op, a1);
                    if (npx == 2) b1 = qmcu_smlad(ya, op, b1);
                    op = (wv >> ((2 * a + 1) * wb)) & m;
                    a1 = qmcu_smlad(xc, op, a1);
                    if (npx == 2) b1 = qmcu_smlad(yc, op, b1);
                }
            }
        }
    const int32_t half = 1 << (wb - 1);
    const int8_t *kexp = (const int8_t *)w + oc * row;   /* after every channel's words */
    const int32_t k0 = fuse ? kexp[o] : 0, k1 = fuse && two ? kexp[o + 1] : 0;
    int32_t *ap = acc + o;
    ap[0] = (int32_t)((uint32_t)(ap[0] + a0 - half * s0) << k0);
    if (two) ap[1] = (int32_t)((uint32_t)(ap[1] + a1 - half * s0) << k1);
    if (npx == 2) {
        int32_t *bp = acc + acc_pix + o;
        bp[0] = (int32_t)((uint32_t)(bp[0] + b0 - half * s1) << k0);
        if (two) bp[1] = (int32_t)((uint32_t)(bp[1] + b1 - half * s1) << k1);
    }
}

QMCU_INLINE void conv_wn_body(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                              const uint8_t *x0, int32_t x_row, int32_t x_pix, const uint8_t *w,
                              const int32_t *bias, const int32_t *mult, const int32_t *shift,
                              const qmcu_q *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                              int32_t oc, int32_t sw, int32_t wb, int32_t ob, int32_t fuse) {
    uint32_t m = wb == 4 ? 0x000F000Fu : 0x00030003u;
#ifdef QMCU_DSP
    QMCU_OPAQUE(m);
#endif
    const int32_t s0 = wn_window_sum(x0, x_row, x_pix, kh, kw, c);
    const int32_t s1 = npx == 2 ? wn_window_sum(x0 + sw * x_pix, x_row, x_pix, kh, kw, c) : 0;
    int32_t o = 0;
    for (; o + 1 < oc; o += 2)        /* a literal `two` in each call: gcc specialises both */
        conv_wn_pair(acc, acc_pix, x0, x_row, x_pix, w, o, 1, s0, s1, npx, kh, kw, c, oc, sw,
                     wb, fuse, m);
    if (o < oc)
        conv_wn_pair(acc, acc_pix, x0, x_row, x_pix, w, o, 0, s0, s1, npx, kh, kw, c, oc, sw,
                     wb, fuse, m);
    if (!fuse) return;
    out_pixels(y, y_pix, acc, acc_pix, npx, oc, bias, mult, shift, q, ob);
}

/* npx = 1 or 2 per call (conv_wn), the last pixel of an odd row alone (conv_wn_tail): each
 * keeps a literal npx, so gcc specialises both. */
QMCU_LOOP void conv_wn(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                       const uint8_t *x0, int32_t x_row, int32_t x_pix, const uint8_t *w,
                       const int32_t *bias, const int32_t *mult, const int32_t *shift,
                       const qmcu_q *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                       int32_t oc, int32_t sw, int32_t wb, int32_t ob, int32_t fuse) {
    conv_wn_body(y, y_pix, acc, acc_pix, x0, x_row, x_pix, w, bias, mult, shift, q, npx, kh,
                 kw, c, oc, sw, wb, ob, fuse);
}

QMCU_LOOP void conv_wn_tail(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                            const uint8_t *x0, int32_t x_row, int32_t x_pix, const uint8_t *w,
                            const int32_t *bias, const int32_t *mult, const int32_t *shift,
                            const qmcu_q *q, int32_t kh, int32_t kw, int32_t c, int32_t oc,
                            int32_t sw, int32_t wb, int32_t ob, int32_t fuse) {
    conv_wn_body(y, y_pix, acc, acc_pix, x0, x_row, x_pix, w, bias, mult, shift, q, 1, kh, kw,
                 c, oc, sw, wb, ob, fuse);
}

QMCU_INLINE void conv_wn_pixels(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                                const uint8_t *x, int32_t x_row, int32_t x_pix,
                                const uint8_t *w, const int32_t *bias, const int32_t *mult,
                                const int32_t *shift, const qmcu_q *q, int32_t npx, int32_t kh,
                                int32_t kw, int32_t c, int32_t oc, int32_t sw, int32_t wb,
                                int32_t ob, int32_t fuse) {
    int32_t p = 0;
    for (; p + 1 < npx; p += 2)
        conv_wn(fuse ? y + p * y_pix : y, y_pix, acc + p * acc_pix, acc_pix,
                x + p * sw * x_pix, x_row, x_pix, w, bias, mult, shift, q, 2, kh, kw, c, oc,
                sw, wb, ob, fuse);
    if (p < npx)
        conv_wn_tail(fuse ? y + p * y_pix : y, y_pix, acc + p * acc_pix, acc_pix,
                     x + p * sw * x_pix, x_row, x_pix, w, bias, mult, shift, q, kh, kw, c, oc,
                     sw, wb, ob, fuse);
}

QMCU_INLINE int32_t qmcu_conv_wn(void *y, int32_t y_pix, void *acc, int32_t acc_pix, void *x,
                                 int32_t x_row, int32_t x_pix, void *w, void *bias, void *mult,
                                 void *shift, void *q, int32_t npx, int32_t kh, int32_t kw,
                                 int32_t c, int32_t oc, int32_t sw, int32_t wb, int32_t ob) {
    const qmcu_q qo = out_params((const int32_t *)q);
    conv_wn_pixels((uint8_t *)y, y_pix, (int32_t *)acc, acc_pix, (const uint8_t *)x, x_row,
                   x_pix, (const uint8_t *)w, (const int32_t *)bias, (const int32_t *)mult,
                   (const int32_t *)shift, &qo, npx, kh, kw, c, oc, sw, wb, ob, 1);
    return 0;
}

QMCU_INLINE int32_t qmcu_conv_wn_acc(void *acc, int32_t acc_pix, void *x, int32_t x_row,
                                     int32_t x_pix, void *w, int32_t npx, int32_t kh,
                                     int32_t kw, int32_t c, int32_t oc, int32_t sw,
                                     int32_t wb) {
    conv_wn_pixels((uint8_t *)0, 0, (int32_t *)acc, acc_pix, (const uint8_t *)x, x_row, x_pix,
                   (const uint8_t *)w, 0, 0, 0, 0, npx, kh, kw, c, oc, sw, wb, 8, 0);
    return 0;
}
#endif
