"""Warp kernels: tile binning of projected Gaussians and per-tile front-to-back compositing, forward and backward.

One thread owns one 16x16 tile and walks that tile's depth-sorted Gaussian list; for each Gaussian it visits
only the tile pixels inside the Gaussian's alpha >= 1/255 ellipse (row spans), so the work is close to the number
of real Gaussian-pixel contributions. This suits Warp's serial CPU launches; on CUDA it is correct but slow
(gsplat serves CUDA). Per-Gaussian gradients are summed per tile and added once per (tile, Gaussian) pair.
Tiles are visited as tile_first + k * tile_stride so that several CPU threads can each launch a share (Warp
releases the GIL while a CPU kernel runs); each thread then needs its own gradient buffers (CPU atomics are
plain adds).
"""
from __future__ import annotations

import warp as wp

wp.set_module_options({"enable_backward": False})

TILE = 16
ALPHA_MIN = wp.constant(1.0 / 255.0)
ALPHA_MAX = wp.constant(0.99)
T_MIN = wp.constant(1e-4)


@wp.kernel
def emit_pairs(
    rects: wp.array(dtype=wp.vec4i), offsets: wp.array(dtype=wp.int32), rank: wp.array(dtype=wp.int64),
    n_rank: wp.int64, tiles_x: int,
    keys: wp.array(dtype=wp.int64), values: wp.array(dtype=wp.int32),
):
    """For every tile a visible Gaussian's box touches, write key = tile * n_rank + depth rank, value = index."""
    i = wp.tid()
    r = rects[i]
    j = offsets[i]
    for ty in range(r[1], r[3]):
        for tx in range(r[0], r[2]):
            keys[j] = wp.int64(ty * tiles_x + tx) * n_rank + rank[i]
            values[j] = i
            j += 1


@wp.kernel
def tile_ranges(keys: wp.array(dtype=wp.int64), n_pairs: int, n_rank: wp.int64, ranges: wp.array2d(dtype=wp.int32)):
    """ranges[tile] = [start, end) of the tile's entries in the sorted pair list."""
    j = wp.tid()
    t = int(keys[j] / n_rank)
    if j == 0 or int(keys[j - 1] / n_rank) != t:
        ranges[t, 0] = j
    if j == n_pairs - 1 or int(keys[j + 1] / n_rank) != t:
        ranges[t, 1] = j + 1


@wp.func
def row_span(m: wp.vec2, cn: wp.vec3, s: float, py: int, x0: int, x1: int):
    """Pixel columns [lo, hi) of row py within [x0, x1) that may satisfy sigma <= s (a little generous)."""
    dy = m[1] - (float(py) + 0.5)
    a = cn[0]
    bdy = cn[1] * dy
    s2 = s * 1.001 + 1e-3
    disc = bdy * bdy - a * (cn[2] * dy * dy - 2.0 * s2)
    lo = x1
    hi = x1
    if disc >= 0.0:
        r = wp.sqrt(disc)
        # dx = m.x - (px + 0.5) in [(-bdy - r)/a, (-bdy + r)/a]
        # clamp in float before converting: far-off spans must not overflow int
        lo = int(wp.clamp(wp.ceil(m[0] - (-bdy + r) / a - 0.5), float(x0), float(x1)))
        hi = int(wp.clamp(wp.floor(m[0] - (-bdy - r) / a - 0.5) + 1.0, float(x0), float(x1)))
    return lo, hi


@wp.func
def gauss_alpha(m: wp.vec2, cn: wp.vec3, o: float, s: float, px: int, py: int):
    """alpha = min(0.99, o exp(-sigma)) at pixel (px, py), 0 when sigma < 0 or surely below 1/255 (sigma
    beyond s = ln(255 o) plus a margin, which saves the exp without changing any result)."""
    dx = m[0] - (float(px) + 0.5)
    dy = m[1] - (float(py) + 0.5)
    sigma = 0.5 * (cn[0] * dx * dx + cn[2] * dy * dy) + cn[1] * dx * dy
    alpha = float(0.0)
    g = float(0.0)
    if sigma >= 0.0 and sigma <= s * 1.001 + 1e-3:
        g = wp.exp(-sigma)
        alpha = wp.min(ALPHA_MAX, o * g)
    return alpha, g, dx, dy


@wp.kernel
def raster_fwd(
    ranges: wp.array2d(dtype=wp.int32), ids: wp.array(dtype=wp.int32),
    means2d: wp.array(dtype=wp.vec2), conics: wp.array(dtype=wp.vec3), opac: wp.array(dtype=float),
    colors: wp.array(dtype=wp.vec3), depths: wp.array(dtype=float), smax: wp.array(dtype=float),
    radii: wp.array(dtype=wp.vec2i), width: int, height: int, tiles_x: int, tile_first: int, tile_stride: int,
    # outputs, per pixel (row-major); trans must be 1 and last -1 on entry
    out_color: wp.array(dtype=wp.vec3), out_depth: wp.array(dtype=float), trans: wp.array(dtype=float),
    last: wp.array(dtype=wp.int32),
):
    t = tile_first + wp.tid() * tile_stride
    x0 = (t % tiles_x) * TILE
    y0 = (t / tiles_x) * TILE
    x1 = wp.min(x0 + TILE, width)
    y1 = wp.min(y0 + TILE, height)
    n_pix = (x1 - x0) * (y1 - y0)
    n_done = int(0)
    j = ranges[t, 0]
    j_stop = ranges[t, 1]
    while j < j_stop and n_done < n_pix:
        g = ids[j]
        m = means2d[g]
        cn = conics[g]
        o = opac[g]
        c = colors[g]
        z = depths[g]
        sg = smax[g]
        ry = float(radii[g][1])
        ya = int(wp.clamp(wp.floor(m[1] - ry - 0.5), float(y0), float(y1)))
        yb = int(wp.clamp(wp.ceil(m[1] + ry - 0.5) + 1.0, float(y0), float(y1)))
        for py in range(ya, yb):
            lo, hi = row_span(m, cn, sg, py, x0, x1)
            for px in range(lo, hi):
                k = py * width + px
                if last[k] >= 0:
                    continue
                alpha, gv, dx, dy = gauss_alpha(m, cn, o, sg, px, py)
                if alpha < ALPHA_MIN:
                    continue
                tk = trans[k]
                nt = tk * (1.0 - alpha)
                if nt <= T_MIN:
                    last[k] = j
                    n_done += 1
                    continue
                w = alpha * tk
                out_color[k] = out_color[k] + w * c
                out_depth[k] = out_depth[k] + w * z
                trans[k] = nt
        j += 1
    for py in range(y0, y1):
        for px in range(x0, x1):
            k = py * width + px
            if last[k] < 0:
                last[k] = j_stop


@wp.kernel
def raster_bwd(
    ranges: wp.array2d(dtype=wp.int32), ids: wp.array(dtype=wp.int32),
    means2d: wp.array(dtype=wp.vec2), conics: wp.array(dtype=wp.vec3), opac: wp.array(dtype=float),
    colors: wp.array(dtype=wp.vec3), depths: wp.array(dtype=float), smax: wp.array(dtype=float),
    radii: wp.array(dtype=wp.vec2i), width: int, height: int, tiles_x: int, tile_first: int, tile_stride: int,
    trans_final: wp.array(dtype=float), last: wp.array(dtype=wp.int32),
    v_color: wp.array(dtype=wp.vec3), v_depth: wp.array(dtype=float), v_alpha: wp.array(dtype=float),
    # per-pixel scratch: trans starts as a copy of trans_final, acc_c / acc_d zero
    trans: wp.array(dtype=float), acc_c: wp.array(dtype=wp.vec3), acc_d: wp.array(dtype=float),
    # per-Gaussian gradient outputs (accumulated)
    v_means2d: wp.array(dtype=wp.vec2), v_conics: wp.array(dtype=wp.vec3), v_opac: wp.array(dtype=float),
    v_colors: wp.array(dtype=wp.vec3), v_depths: wp.array(dtype=float),
):
    t = tile_first + wp.tid() * tile_stride
    x0 = (t % tiles_x) * TILE
    y0 = (t / tiles_x) * TILE
    x1 = wp.min(x0 + TILE, width)
    y1 = wp.min(y0 + TILE, height)
    j_start = ranges[t, 0]
    j_end = int(0)
    for py in range(y0, y1):
        for px in range(x0, x1):
            j_end = wp.max(j_end, last[py * width + px])
    j = wp.min(j_end, ranges[t, 1]) - 1
    while j >= j_start:
        g = ids[j]
        m = means2d[g]
        cn = conics[g]
        o = opac[g]
        c = colors[g]
        z = depths[g]
        sg = smax[g]
        ry = float(radii[g][1])
        ya = int(wp.clamp(wp.floor(m[1] - ry - 0.5), float(y0), float(y1)))
        yb = int(wp.clamp(wp.ceil(m[1] + ry - 0.5) + 1.0, float(y0), float(y1)))
        gm = wp.vec2(0.0)
        gcn = wp.vec3(0.0)
        go = float(0.0)
        gc = wp.vec3(0.0)
        gz = float(0.0)
        hit = int(0)
        for py in range(ya, yb):
            lo, hi = row_span(m, cn, sg, py, x0, x1)
            for px in range(lo, hi):
                k = py * width + px
                if j >= last[k]:
                    continue
                alpha, gv, dx, dy = gauss_alpha(m, cn, o, sg, px, py)
                if alpha < ALPHA_MIN:
                    continue
                hit = 1
                ra = 1.0 / (1.0 - alpha)
                tk = trans[k] * ra
                w = alpha * tk
                vc = v_color[k]
                vd = v_depth[k]
                gc += w * vc
                gz += w * vd
                ac = acc_c[k]
                ad = acc_d[k]
                v_a = tk * (wp.dot(c, vc) + z * vd) - (wp.dot(ac, vc) + ad * vd) * ra + v_alpha[k] * trans_final[k] * ra
                acc_c[k] = ac + w * c
                acc_d[k] = ad + w * z
                trans[k] = tk
                if o * gv <= ALPHA_MAX:
                    go += gv * v_a
                    v_s = -o * gv * v_a
                    gcn += wp.vec3(0.5 * dx * dx * v_s, dx * dy * v_s, 0.5 * dy * dy * v_s)
                    gm += wp.vec2((cn[0] * dx + cn[1] * dy) * v_s, (cn[1] * dx + cn[2] * dy) * v_s)
        if hit != 0:
            wp.atomic_add(v_means2d, g, gm)
            wp.atomic_add(v_conics, g, gcn)
            wp.atomic_add(v_opac, g, go)
            wp.atomic_add(v_colors, g, gc)
            wp.atomic_add(v_depths, g, gz)
        j -= 1
