/* Micro-kernels for conv2d / pointwise / dense with packed low-bit weights (4 or 2 bits) and
 * low-bit activations (4 or 2 bits): two output channels share each 16-bit lane of an SMLAD
 * operand, so one SMLAD does four MACs (layout and exactness bound: topi/wpack.py).
 *
 *   operand lane = u_A + 2^S * w_B,  S = 16 - wb,  u_A = w_A + 2^(wb-1) >= 0
 *   P += x_lo * lane_lo + x_hi * lane_hi          (one SMLAD, channels A and B of a pixel)
 *   low field of P: sum x*u_A, exact below 2^S: drained into A every `dwords` activation
 *   words (at most topi.wpack.drain_period(ib, wb) SMLADs), the high field stays in P;
 *   channel A = A - 2^(wb-1) * sum x,  channel B = P >> S (arithmetic).
 *
 * Weights (params.prepare): per output-channel pair, per tap, per activation word, wb*H/4
 * words (H = 16/ib lane pairs per word), operand q of a word = ror(word, 2*wb*q) & mask;
 * then one byte k per output channel: the kernel stores acc * 2^k (bias and shift are
 * prepared for it). The same C runs on any host (SMLAD emulated), so the host tests exercise
 * the packed arithmetic and its drains too.
 *
 * qmcu_conv_lw(y, y_pix, acc, acc_pix, x, x_row, x_pix, w, bias, mult, shift, q,
 *              npx, kh, kw, c, oc, sw, ib, wb, dwords, ob): as qmcu_conv (qmcu_ukernels.h);
 * qmcu_conv_lw_acc: the sums only, added into acc (no output stage, no 2^k).
 */
#ifndef QMCU_UKERNELS_LOWBIT_W_H
#define QMCU_UKERNELS_LOWBIT_W_H
#include "qmcu_ukernels.h"

/* Output-channel pairs per pass (tuning knob lw_pairs): 2 share each unpacked activation lane;
 * 1 leaves registers to the address arithmetic; 0 (auto, the default): 2 (the drained low
 * fields live outside the unrolled runs of words, so drains do not crowd the registers). */
#ifndef QMCU_LW_PAIRS
#define QMCU_LW_PAIRS 0
#endif

/* Requantize each channel pair from registers right after its products (knob requant_at =
 * "pair"), or all channels after the products (requant_out, as the int8 kernels). */
#ifdef QMCU_REQUANT_AT_PAIR
#define QMCU_LW_RQ_AT_PAIR 1
#else
#define QMCU_LW_RQ_AT_PAIR 0
#endif

/* Operand q of a weight word: ror(v, 2*wb*q) & mask, one AND with a rotated register. */
QMCU_INLINE uint32_t lw_operand(uint32_t v, int32_t q, int32_t wb, uint32_t mask) {
    const int32_t r = 2 * wb * q;
    return mask & (r ? (v >> r) | (v << ((32 - r) & 31)) : v);
}

/* Lane pair m of a word of activations: values m and m + 16/ib as 16-bit lanes. */
QMCU_INLINE uint32_t lw_xlane(uint32_t v, int32_t m, int32_t ib, uint32_t lm) {
#ifdef QMCU_DSP
    return (uint32_t)xlane(v, m, ib, lm);
#else
    return (v >> (m * ib)) & lm;
#endif
}

/* Sum of the first n values of a word of activations. */
QMCU_INLINE int32_t lw_word_sum(uint32_t v, int32_t n, int32_t ib) {
    if (n * ib < 32) v &= (1u << (n * ib)) - 1u;
#ifdef QMCU_DSP
    if (ib == 2) v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);   /* nibble sums */
    return (int32_t)__usada8(v & 0x0F0F0F0Fu, 0, __usad8((v >> 4) & 0x0F0F0F0Fu, 0));
#else
    int32_t s = 0;
    for (int32_t i = 0; i < 32; i += ib) s += (int32_t)((v >> i) & ((1u << ib) - 1u));
    return s;
#endif
}

/* Word g of a pixel's packed channels at tap pointer xp: whole, or the partial last one. */
QMCU_INLINE uint32_t lw_word(const uint8_t *xp, int32_t g, int32_t c, int32_t ib) {
    const int32_t G = 32 / ib;
    return g < c / G ? ld32(xp + 4 * g) : ldpart(xp + 4 * g, (c % G * ib + 7) / 8);
}

/* Sum of a pixel's window (all taps and channels). */
QMCU_INLINE int32_t lw_window_sum(const uint8_t *x, int32_t x_row, int32_t x_pix, int32_t kh,
                                  int32_t kw, int32_t c, int32_t ib) {
    const int32_t G = 32 / ib, ng = (c + G - 1) / G;
    int32_t s = 0;
    for (int32_t i = 0; i < kh; i++)
        for (int32_t j = 0; j < kw; j++)
            for (int32_t g = 0; g < ng; g++)
                s += lw_word_sum(lw_word(x + i * x_row + j * x_pix, g, c, ib),
                                 g < c / G ? G : c % G, ib);
    return s;
}

/* The output stage of channel pair oa, oa + 1 (the second only if it exists) of npx pixels:
 * va[p], vb[p] their sums, scaled by 2^k when fused. Fused: requantized from registers right
 * away (rq_pair, shared with the int8 kernels); otherwise added into acc. */
QMCU_INLINE void lw_pair_out(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                             int32_t oa, int32_t oc, const int32_t *va, const int32_t *vb,
                             int32_t npx, const int32_t *bias, const int32_t *mult,
                             const int32_t *shift, const qmcu_q *q, int32_t ob, int32_t fuse) {
    const int32_t two = oa + 1 < oc;
    if (!fuse || !QMCU_LW_RQ_AT_PAIR) {
        /* fused: the generated kernel zeroes acc right before the call (its init block), so
         * the sums are stored, not added (saves a load per output) */
        for (int32_t p = 0; p < npx; p++) {
            int32_t *ap = acc + p * acc_pix + oa;
            ap[0] = (fuse ? 0 : ap[0]) + va[p];
            if (two) ap[1] = (fuse ? 0 : ap[1]) + vb[p];
        }
        return;
    }
#ifdef QMCU_DSP
    if (two) {
        rq_pair(y, y_pix, oa, va[0], vb[0], npx == 2 ? va[1] : 0, npx == 2 ? vb[1] : 0, npx,
                bias + oa, mult + oa, shift + oa, q, ob);
        return;
    }
#endif
    for (int32_t p = 0; p < npx; p++) {
        out_one(y + p * y_pix, oa, va[p], bias, mult, shift, q, ob);
        if (two) out_one(y + p * y_pix, oa + 1, vb[p], bias, mult, shift, q, ob);
    }
}

/* n whole words of activations at xp (xp + dx: the second pixel) against the weights at pw
 * (pair q at pw + q * wpair) into the packed accumulators P[q][p]; xp and pw advance. Each
 * lane pair of activations is unpacked once for the nq pairs, each weight operand extracted
 * once for the npx pixels. */
QMCU_INLINE void lw_words(int32_t P[2][2], const uint8_t **xpp, const int8_t **pwp, int32_t n,
                          int32_t nq, int32_t npx, int32_t dx, int32_t wpair, int32_t ib,
                          int32_t wb, uint32_t lm, uint32_t wm) {
    const int32_t H = 16 / ib, opw = 8 / wb, wpg = H / opw;
    const uint8_t *xp = *xpp;
    const int8_t *pw = *pwp;
    int32_t p00 = P[0][0], p01 = P[0][1], p10 = P[1][0], p11 = P[1][1];
    for (const uint8_t *end = xp + 4 * n; xp != end; xp += 4, pw += 4 * wpg) {
        const uint32_t v0 = ld32(xp), v1 = npx == 2 ? ld32(xp + dx) : 0;
#pragma GCC unroll 8
        for (int32_t m = 0; m < H; m++) {
            const uint32_t x0l = lw_xlane(v0, m, ib, lm);
            const uint32_t x1l = npx == 2 ? lw_xlane(v1, m, ib, lm) : 0;
            const uint32_t op0 = lw_operand(ld32(pw + 4 * (m / opw)), m % opw, wb, wm);
            p00 = qmcu_smlad(x0l, op0, p00);
            if (npx == 2) p01 = qmcu_smlad(x1l, op0, p01);
            if (nq == 2) {
                const uint32_t op1 =
                    lw_operand(ld32(pw + wpair + 4 * (m / opw)), m % opw, wb, wm);
                p10 = qmcu_smlad(x0l, op1, p10);
                if (npx == 2) p11 = qmcu_smlad(x1l, op1, p11);
            }
        }
    }
    P[0][0] = p00;
    P[0][1] = p01;
    P[1][0] = p10;
    P[1][1] = p11;
    *xpp = xp;
    *pwp = pw;
}

/* Move the low fields of the accumulators into A (the bound is reached). packed: both pixels'
 * drained fields of pair q share A[q][0] as two 16-bit halves (the caller checks that they
 * cannot carry), which keeps the drained sums in registers. */
QMCU_INLINE void lw_drain(int32_t P[2][2], int32_t A[2][2], int32_t nq, int32_t npx,
                          int32_t fmask, int32_t packed) {
    for (int32_t q = 0; q < nq; q++) {
        const int32_t t0 = P[q][0] & fmask;
        P[q][0] -= t0;
        A[q][0] += t0;
        if (npx == 2) {
            const int32_t t1 = P[q][1] & fmask;
            P[q][1] -= t1;
            if (packed)
                A[q][0] += (int32_t)((uint32_t)t1 << 16);
            else
                A[q][1] += t1;
        }
    }
}

/* Output channels o .. o + 2*nq - 1 (nq = 1 or 2 pairs, those below oc) of npx pixels.
 * hs0, hs1: the pixels' activation sums times 2^(wb-1). uni: every channel's exponent k is S
 * (wpack.uniform_exponent), so that channel B is P with its low field cleared and channel A
 * the low field shifted up by S, without per-channel shifts. */
QMCU_INLINE void conv_lw_block(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                               const uint8_t *x, int32_t x_row, int32_t x_pix, const int8_t *w,
                               const int32_t *bias, const int32_t *mult, const int32_t *shift,
                               const qmcu_q *qo, int32_t o, int32_t nq, int32_t hs0,
                               int32_t hs1, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                               int32_t oc, int32_t sw, int32_t ib, int32_t wb, int32_t dwords,
                               int32_t ob, int32_t fuse, int32_t uni, int32_t drains,
                               uint32_t lm, uint32_t wm) {
    const int32_t G = 32 / ib, H = G / 2, ng = (c + G - 1) / G, nfull = c / G, opw = 8 / wb;
    const int32_t wpg = H / opw, S = 16 - wb;
    const int32_t fmask = (1 << S) - 1, dx = sw * x_pix, wpair = 4 * kh * kw * ng * wpg;
    const int8_t *kexp = w + (oc + 1) / 2 * wpair;
    const int8_t *pw = w + o / 2 * wpair;
#ifdef QMCU_DSP
    /* the activation words are loaded per block: hoisted out of the loop over blocks they
     * would hold registers that the products need */
    QMCU_OPAQUE(x);
#endif
    /* [pair][pixel]. Without drains P starts at -hs, so that it ends as the exact sum
     * sA + 2^S * sB of the two channels with |sA| < 2^(S-1): A = the low field sign-extended
     * (the offset of u_A is gone), B * 2^S = P - A. With drains A takes the drained low
     * fields (non-negative, below 2^S) and starts at -hs. */
    int32_t P[2][2], A[2][2];
    /* the drained fields of a pixel fit a 16-bit half: at most (words / dwords) drains, each
     * below 2^S; the halves start at zero, the offsets are subtracted at the end */
    const int32_t packed = drains && npx == 2 && kh * kw * ng / dwords * fmask <= 0xFFFF;
    for (int32_t q = 0; q < 2; q++)
        for (int32_t p = 0; p < 2; p++) {
            const int32_t hs = p ? hs1 : hs0;
            P[q][p] = drains ? 0 : -hs;
            A[q][p] = drains && !packed ? -hs : 0;
        }
    int32_t left = dwords;         /* words until the next drain (they run across taps) */
    for (int32_t i = 0; i < kh; i++)
        for (int32_t j = 0; j < kw; j++) {
            const uint8_t *xp = x + i * x_row + j * x_pix;
            int32_t g = 0;
            if (kh * kw == 1 && drains) {
                /* one tap: runs of exactly dwords words (a constant: they unroll) */
                for (; g + dwords <= nfull; g += dwords) {
                    lw_words(P, &xp, &pw, dwords, nq, npx, dx, wpair, ib, wb, lm, wm);
                    lw_drain(P, A, nq, npx, fmask, packed);
                }
            }
            /* whole words, in runs that end where a drain is due */
            while (g < nfull) {
                const int32_t n = drains && left < nfull - g ? left : nfull - g;
                lw_words(P, &xp, &pw, n, nq, npx, dx, wpair, ib, wb, lm, wm);
                g += n;
                if (drains && (left -= n) == 0) {
                    lw_drain(P, A, nq, npx, fmask, packed);
                    left = dwords;
                }
            }
            if (nfull == ng) continue;
            /* the partial last word: its lane pairs that hold channels */
            const int32_t tb = (c % G * ib + 7) / 8;
            const uint32_t v0 = ldpart(xp, tb), v1 = npx == 2 ? ldpart(xp + dx, tb) : 0;
            const int32_t mend = c % G < H ? c % G : H;
#pragma GCC unroll 8
            for (int32_t m = 0; m < mend; m++) {
                const uint32_t x0l = lw_xlane(v0, m, ib, lm);
                const uint32_t x1l = npx == 2 ? lw_xlane(v1, m, ib, lm) : 0;
                for (int32_t q = 0; q < nq; q++) {
                    const uint32_t op = lw_operand(
                        ld32(pw + q * wpair + 4 * (m / opw)), m % opw, wb, wm);
                    P[q][0] = qmcu_smlad(x0l, op, P[q][0]);
                    if (npx == 2) P[q][1] = qmcu_smlad(x1l, op, P[q][1]);
                }
            }
            pw += 4 * wpg;
            if (drains && --left == 0) {
                lw_drain(P, A, nq, npx, fmask, packed);
                left = dwords;
            }
        }
    if (packed)
        for (int32_t q = 0; q < nq; q++) {
            A[q][1] = (int32_t)((uint32_t)A[q][0] >> 16) - hs1;
            A[q][0] = (A[q][0] & 0xFFFF) - hs0;
        }
    for (int32_t q = 0; q < nq; q++) {
        const int32_t oa = o + 2 * q;
        int32_t va[2], vb[2];
        for (int32_t p = 0; p < npx; p++) {
            const int32_t lo = drains ? P[q][p] & fmask
                : (int32_t)((uint32_t)P[q][p] << (32 - S)) >> (32 - S);
            const int32_t a = A[q][p] + lo, b = P[q][p] - lo;     /* sA, sB * 2^S */
            if (fuse && uni) {
                va[p] = (int32_t)((uint32_t)a << S);
                vb[p] = b;
            } else {
                const int32_t k0 = fuse ? kexp[oa] : 0;
                const int32_t k1 = fuse && oa + 1 < oc ? kexp[oa + 1] : 0;
                va[p] = (int32_t)((uint32_t)a << k0);
                vb[p] = (int32_t)((uint32_t)(b >> S) << k1);
            }
        }
        lw_pair_out(y, y_pix, acc, acc_pix, oa, oc, va, vb, npx, bias, mult, shift, qo, ob,
                    fuse);
    }
}

/* All output channels of npx pixels, one or two channel pairs per pass (QMCU_LW_PAIRS). */
QMCU_INLINE void conv_lw_pass(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                              const uint8_t *x0, int32_t x_row, int32_t x_pix, const int8_t *w,
                              const int32_t *bias, const int32_t *mult, const int32_t *shift,
                              const qmcu_q *q, int32_t hs0, int32_t hs1, int32_t npx,
                              int32_t kh, int32_t kw, int32_t c, int32_t oc, int32_t sw,
                              int32_t ib, int32_t wb, int32_t dwords, int32_t ob, int32_t fuse,
                              int32_t uni, uint32_t lm, uint32_t wm) {
    /* the one place that decides whether the reduction drains (dwords: wpack.drain_words) */
    const int32_t G = 32 / ib, drains = kh * kw * ((c + G - 1) / G) > dwords;
    int32_t o = 0;
    const int32_t pairs = QMCU_LW_PAIRS ? QMCU_LW_PAIRS : 2;
    for (; o + 3 < oc && pairs == 2; o += 4)
        conv_lw_block(y, y_pix, acc, acc_pix, x0, x_row, x_pix, w, bias, mult, shift, q, o, 2,
                      hs0, hs1, npx, kh, kw, c, oc, sw, ib, wb, dwords, ob, fuse, uni, drains, lm, wm);
    for (; o < oc; o += 2)
        conv_lw_block(y, y_pix, acc, acc_pix, x0, x_row, x_pix, w, bias, mult, shift, q, o, 1,
                      hs0, hs1, npx, kh, kw, c, oc, sw, ib, wb, dwords, ob, fuse, uni, drains, lm, wm);
}

QMCU_INLINE void conv_lw_body(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                              const uint8_t *x0, int32_t x_row, int32_t x_pix, const int8_t *w,
                              const int32_t *bias, const int32_t *mult, const int32_t *shift,
                              const qmcu_q *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                              int32_t oc, int32_t sw, int32_t ib, int32_t wb, int32_t dwords,
                              int32_t ob, int32_t fuse) {
    /* the masks in registers: an AND with a rotated register each (as immediates, gcc
     * splits the weight masks into two BICs) */
    uint32_t lm = lane_mask(ib);
    uint32_t wm = wb == 4 ? 0xF00FF00Fu : 0xC003C003u;
#ifdef QMCU_DSP
    QMCU_OPAQUE(lm);
    QMCU_OPAQUE(wm);
#endif
    const int32_t half = 1 << (wb - 1);
    const int32_t hs0 = half * lw_window_sum(x0, x_row, x_pix, kh, kw, c, ib);
    const int32_t hs1 = npx == 2
        ? half * lw_window_sum(x0 + sw * x_pix, x_row, x_pix, kh, kw, c, ib) : 0;
    /* the flag after the exponents (wpack.uniform_exponent) */
    const int32_t G = 32 / ib, wpair = 4 * kh * kw * ((c + G - 1) / G) * (G / 2) / (8 / wb);
    if (fuse && w[(oc + 1) / 2 * wpair + oc])
        conv_lw_pass(y, y_pix, acc, acc_pix, x0, x_row, x_pix, w, bias, mult, shift, q, hs0,
                     hs1, npx, kh, kw, c, oc, sw, ib, wb, dwords, ob, fuse, 1, lm, wm);
    else
        conv_lw_pass(y, y_pix, acc, acc_pix, x0, x_row, x_pix, w, bias, mult, shift, q, hs0,
                     hs1, npx, kh, kw, c, oc, sw, ib, wb, dwords, ob, fuse, 0, lm, wm);
    if (!fuse || QMCU_LW_RQ_AT_PAIR) return;
    out_pixels(y, y_pix, acc, acc_pix, npx, oc, bias, mult, shift, q, ob);
}

/* npx = 1 or 2 per call (conv_lw), the last pixel of an odd row alone (conv_lw_tail): each
 * keeps a literal npx, so gcc specialises both. */
QMCU_LOOP void conv_lw(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                       const uint8_t *x0, int32_t x_row, int32_t x_pix, const int8_t *w,
                       const int32_t *bias, const int32_t *mult, const int32_t *shift,
                       const qmcu_q *q, int32_t npx, int32_t kh, int32_t kw, int32_t c,
                       int32_t oc, int32_t sw, int32_t ib, int32_t wb, int32_t dwords,
                       int32_t ob, int32_t fuse) {
    conv_lw_body(y, y_pix, acc, acc_pix, x0, x_row, x_pix, w, bias, mult, shift, q, npx, kh,
                 kw, c, oc, sw, ib, wb, dwords, ob, fuse);
}

QMCU_LOOP void conv_lw_tail(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                            const uint8_t *x0, int32_t x_row, int32_t x_pix, const int8_t *w,
                            const int32_t *bias, const int32_t *mult, const int32_t *shift,
                            const qmcu_q *q, int32_t kh, int32_t kw, int32_t c, int32_t oc,
                            int32_t sw, int32_t ib, int32_t wb, int32_t dwords, int32_t ob,
                            int32_t fuse) {
    conv_lw_body(y, y_pix, acc, acc_pix, x0, x_row, x_pix, w, bias, mult, shift, q, 1, kh, kw,
                 c, oc, sw, ib, wb, dwords, ob, fuse);
}

QMCU_INLINE void conv_lw_pixels(uint8_t *y, int32_t y_pix, int32_t *acc, int32_t acc_pix,
                                const uint8_t *x, int32_t x_row, int32_t x_pix,
                                const int8_t *w, const int32_t *bias, const int32_t *mult,
                                const int32_t *shift, const qmcu_q *q, int32_t npx, int32_t kh,
                                int32_t kw, int32_t c, int32_t oc, int32_t sw, int32_t ib,
                                int32_t wb, int32_t dwords, int32_t ob, int32_t fuse) {
    int32_t p = 0;
    for (; p + 1 < npx; p += 2)
        conv_lw(fuse ? y + p * y_pix : y, y_pix, acc + p * acc_pix, acc_pix,
                x + p * sw * x_pix, x_row, x_pix, w, bias, mult, shift, q, 2, kh, kw, c, oc,
                sw, ib, wb, dwords, ob, fuse);
    if (p < npx)
        conv_lw_tail(fuse ? y + p * y_pix : y, y_pix, acc + p * acc_pix, acc_pix,
                     x + p * sw * x_pix, x_row, x_pix, w, bias, mult, shift, q, kh, kw, c, oc,
                     sw, ib, wb, dwords, ob, fuse);
}

QMCU_INLINE int32_t qmcu_conv_lw(void *y, int32_t y_pix, void *acc, int32_t acc_pix, void *x,
                                 int32_t x_row, int32_t x_pix, void *w, void *bias, void *mult,
                                 void *shift, void *q, int32_t npx, int32_t kh, int32_t kw,
                                 int32_t c, int32_t oc, int32_t sw, int32_t ib, int32_t wb,
                                 int32_t dwords, int32_t ob) {
    const qmcu_q qo = out_params((const int32_t *)q);
    conv_lw_pixels((uint8_t *)y, y_pix, (int32_t *)acc, acc_pix, (const uint8_t *)x, x_row,
                   x_pix, (const int8_t *)w, (const int32_t *)bias, (const int32_t *)mult,
                   (const int32_t *)shift, &qo, npx, kh, kw, c, oc, sw, ib, wb, dwords, ob, 1);
    return 0;
}

QMCU_INLINE int32_t qmcu_conv_lw_acc(void *acc, int32_t acc_pix, void *x, int32_t x_row,
                                     int32_t x_pix, void *w, int32_t npx, int32_t kh,
                                     int32_t kw, int32_t c, int32_t oc, int32_t sw, int32_t ib,
                                     int32_t wb, int32_t dwords) {
    conv_lw_pixels((uint8_t *)0, 0, (int32_t *)acc, acc_pix, (const uint8_t *)x, x_row, x_pix,
                   (const int8_t *)w, 0, 0, 0, 0, npx, kh, kw, c, oc, sw, ib, wb, dwords, 8, 0);
    return 0;
}
#endif
