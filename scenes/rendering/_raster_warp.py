"""Twin's own Gaussian rasterizer on Warp kernels (CPU, and CUDA for correctness), as a torch autograd Function.

Pipeline: project (one thread per Gaussian) -> emit (tile, depth-rank) keys -> radix sort -> tile ranges ->
composite (one thread per tile). Backward: per-tile compositing gradients back to front, then the projection's
hand-written vector-Jacobian product. Tensors cross between torch and Warp without copies (wp.from_torch).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from twin_kit import quiet_warp, torch_threads

wp = quiet_warp()  # module-load lines would mix into the CLI's machine-readable stdout
from scenes.rendering import _warp_project as wproj  # noqa: E402 - after Warp is quietened
from scenes.rendering import _warp_tiles as wtiles  # noqa: E402

TILE = wtiles.TILE
wp.init()


def _wa(t: torch.Tensor, dtype=None):
    return wp.from_torch(t, dtype=dtype)


class _Frame:
    """Per-render constants shared by forward and backward."""

    def __init__(self, viewmat, K, width, height, degree, near, far, device):
        vm = viewmat.detach().double().cpu()
        R, t = vm[:3, :3], vm[:3, 3]
        k = K.detach().double().cpu()
        self.view_r = wp.mat33(*R.flatten().tolist())
        self.view_t = wp.vec3(*t.tolist())
        self.campos = wp.vec3(*(-R.T @ t).tolist())
        self.fx, self.fy, self.cx, self.cy = (float(v) for v in (k[0, 0], k[1, 1], k[0, 2], k[1, 2]))
        self.width, self.height, self.degree = width, height, degree
        self.n_coeffs = (degree + 1) ** 2
        self.near, self.far = near, far
        self.tiles_x = (width + TILE - 1) // TILE
        self.tiles_y = (height + TILE - 1) // TILE
        self.device = wp.device_from_torch(device)
        self.workers = 1 if self.device.is_cuda else max(1, min(torch.get_num_threads(), 16))

    def cam_args(self):
        return [self.view_r, self.view_t, self.campos, self.fx, self.fy, self.cx, self.cy, self.width, self.height]


def _launch_tiles(kernel, fr: _Frame, make_inputs) -> None:
    """Launch a per-tile kernel; on the CPU split the tiles over torch.get_num_threads() Python threads
    (interleaved, for balance). make_inputs(worker, tile_first, tile_stride) gives the kernel inputs."""
    n_t = fr.tiles_x * fr.tiles_y
    nw = max(1, min(fr.workers, n_t))

    def one(w):
        wp.launch(kernel, dim=(n_t - w + nw - 1) // nw, device=fr.device, inputs=make_inputs(w, w, nw))

    if nw == 1:
        one(0)
        return
    wp.load_module(wtiles, device=fr.device)
    list(_pool(nw).map(one, range(nw)))


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(n: int) -> ThreadPoolExecutor:
    """A lasting pool of n threads: a new thread's first Warp launch costs ~60 ms (measured), so a pool made
    per render cost 10x the 128 x 128 sensor render itself."""
    if n not in _POOLS:
        _POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix="splat-tiles")
    return _POOLS[n]


def _forward(fr: _Frame, means, quats, scales, opac, sh):
    # projection and binning on one torch thread: their small sorts and scans cost several times more in a
    # 2-thread pool on a busy 2-core CPU; the tiles below still spread over fr.workers threads
    with torch_threads(1):
        n, dev, tdev = means.shape[0], fr.device, means.device
        f32 = dict(dtype=torch.float32, device=tdev)
        means2d = torch.zeros(n, 2, **f32)
        conics = torch.zeros(n, 3, **f32)
        depths = torch.zeros(n, **f32)
        colors = torch.zeros(n, 3, **f32)
        smax = torch.zeros(n, **f32)
        radii = torch.zeros(n, 2, dtype=torch.int32, device=tdev)
        rects = torch.zeros(n, 4, dtype=torch.int32, device=tdev)
        n_tiles = torch.zeros(n, dtype=torch.int32, device=tdev)
        if n:
            wp.launch(wproj.project_fwd, dim=n, device=dev, inputs=[
                _wa(means, wp.vec3), _wa(quats, wp.vec4), _wa(scales, wp.vec3), _wa(opac), _wa(sh, wp.vec3),
                fr.n_coeffs, *fr.cam_args()[:7], fr.width, fr.height, fr.near, fr.far, fr.tiles_x, fr.tiles_y,
                _wa(means2d, wp.vec2), _wa(conics, wp.vec3), _wa(depths), _wa(colors, wp.vec3), _wa(smax),
                _wa(radii, wp.vec2i), _wa(rects, wp.vec4i), _wa(n_tiles)])
        # binning: key = tile * n + rank of the Gaussian in front-to-back order (stable), radix sorted
        counts = n_tiles.to(torch.int64)
        ends = torch.cumsum(counts, 0)
        n_pairs = int(ends[-1]) if n else 0
        offsets = (ends - counts).to(torch.int32)
        visible = n_tiles > 0
        order = torch.argsort(torch.where(visible, depths, torch.full_like(depths, float("inf"))), stable=True)
        rank = torch.empty(n, dtype=torch.int64, device=tdev)
        rank[order] = torch.arange(n, dtype=torch.int64, device=tdev)
        n_tiles_img = fr.tiles_x * fr.tiles_y
        keys = torch.empty(2 * max(n_pairs, 1), dtype=torch.int64, device=tdev)
        ids = torch.empty(2 * max(n_pairs, 1), dtype=torch.int32, device=tdev)
        ranges = torch.zeros(n_tiles_img, 2, dtype=torch.int32, device=tdev)
        if n_pairs:
            wp.launch(wtiles.emit_pairs, dim=n, device=dev, inputs=[
                _wa(rects, wp.vec4i), _wa(offsets), _wa(rank), wp.int64(n), fr.tiles_x, _wa(keys), _wa(ids)])
            end_bit = max(1, int(n_tiles_img * n).bit_length())
            wp.utils.radix_sort_pairs(_wa(keys), _wa(ids), n_pairs, end_bit=end_bit)
            wp.launch(wtiles.tile_ranges, dim=n_pairs, device=dev,
                      inputs=[_wa(keys), n_pairs, wp.int64(n), _wa(ranges)])
        hw = fr.width * fr.height
        out_color = torch.zeros(hw, 3, **f32)
        out_depth = torch.zeros(hw, **f32)
        trans = torch.ones(hw, **f32)
        last = torch.full((hw,), -1, dtype=torch.int32, device=tdev)
    geo = [_wa(ranges), _wa(ids), _wa(means2d, wp.vec2), _wa(conics, wp.vec3), _wa(opac), _wa(colors, wp.vec3),
           _wa(depths), _wa(smax), _wa(radii, wp.vec2i), fr.width, fr.height, fr.tiles_x]
    outs = [_wa(out_color, wp.vec3), _wa(out_depth), _wa(trans), _wa(last)]
    _launch_tiles(wtiles.raster_fwd, fr, lambda w, first, stride: [*geo, first, stride, *outs])
    saved = dict(means2d=means2d, conics=conics, depths=depths, colors=colors, smax=smax, radii=radii,
                 ranges=ranges, ids=ids, trans=trans, last=last)
    return out_color, out_depth, trans, saved


def _backward(fr: _Frame, means, quats, scales, opac, sh, s, v_color, v_depth, v_alpha):
    n, dev, tdev = means.shape[0], fr.device, means.device
    f32 = dict(dtype=torch.float32, device=tdev)
    hw = fr.width * fr.height
    geo = [_wa(s["ranges"]), _wa(s["ids"]), _wa(s["means2d"], wp.vec2), _wa(s["conics"], wp.vec3), _wa(opac),
           _wa(s["colors"], wp.vec3), _wa(s["depths"]), _wa(s["smax"]), _wa(s["radii"], wp.vec2i),
           fr.width, fr.height, fr.tiles_x]
    pix = [_wa(s["trans"]), _wa(s["last"]), _wa(v_color, wp.vec3), _wa(v_depth), _wa(v_alpha),
           _wa(s["trans"].clone()), _wa(torch.zeros(hw, 3, **f32), wp.vec3), _wa(torch.zeros(hw, **f32))]
    # one set of per-Gaussian gradient buffers per worker thread: (means2d, conics, opacity, colour, depth)
    bufs = [[torch.zeros(n, c, **f32).squeeze(-1) for c in (2, 3, 1, 3, 1)] for _ in range(fr.workers)]
    types = (wp.vec2, wp.vec3, None, wp.vec3, None)

    def args(w, first, stride):
        return [*geo, first, stride, *pix, *(_wa(b, t) for b, t in zip(bufs[w], types))]

    _launch_tiles(wtiles.raster_bwd, fr, args)
    v_means2d, v_conics, v_opac, v_colors, v_depths = (
        torch.stack(b).sum(0) if len(b) > 1 else b[0] for b in zip(*bufs))
    v_means = torch.zeros(n, 3, **f32)
    v_quats = torch.zeros(n, 4, **f32)
    v_scales = torch.zeros(n, 3, **f32)
    v_sh = torch.zeros_like(sh)
    if n:
        wp.launch(wproj.project_bwd, dim=n, device=dev, inputs=[
            _wa(means, wp.vec3), _wa(quats, wp.vec4), _wa(scales, wp.vec3), _wa(sh, wp.vec3), fr.n_coeffs,
            *fr.cam_args(), _wa(s["radii"], wp.vec2i), _wa(s["conics"], wp.vec3), _wa(s["colors"], wp.vec3),
            _wa(v_means2d, wp.vec2), _wa(v_conics, wp.vec3), _wa(v_colors, wp.vec3), _wa(v_depths),
            _wa(v_means, wp.vec3), _wa(v_quats, wp.vec4), _wa(v_scales, wp.vec3), _wa(v_sh, wp.vec3)])
    return v_means, v_quats, v_scales, v_opac, v_sh, v_means2d


class _WarpRasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opac, sh, holder, fr: _Frame):
        prep = [t.detach().to(torch.float32).contiguous() for t in (means, quats, scales, opac, sh)]
        color, accd, trans, saved = _forward(fr, *prep)
        ctx.fr, ctx.prep, ctx.saved = fr, prep, saved
        ctx.dtypes = [t.dtype for t in (means, quats, scales, opac, sh)]
        h, w = fr.height, fr.width
        radii = saved["radii"].amax(dim=1)
        ctx.mark_non_differentiable(radii)
        means2d = saved["means2d"]
        ctx.mark_non_differentiable(means2d)
        return color.view(h, w, 3), accd.view(h, w, 1), (1.0 - trans).view(h, w, 1), radii, means2d

    @staticmethod
    def backward(ctx, v_color, v_accd, v_alpha, _v_radii, _v_means2d):
        fr = ctx.fr
        hw = fr.width * fr.height
        dev = ctx.prep[0].device

        def flat(v, c):
            if v is None:
                return torch.zeros(hw, c, dtype=torch.float32, device=dev).squeeze(-1)
            return v.detach().to(torch.float32).reshape(hw, c).squeeze(-1).contiguous()

        grads = _backward(fr, *ctx.prep, ctx.saved, flat(v_color, 3), flat(v_accd, 1), flat(v_alpha, 1))
        out = [g.to(dt) for g, dt in zip(grads[:5], ctx.dtypes)]
        return (*out, grads[5], None)


def render_warp(means, quats, scales, opacities, sh, viewmat, K, width, height, degree, near, far,
                means2d_grad_holder=None):
    """Warp render -> colour without background (H,W,3), accumulated depth (H,W,1), alpha (H,W,1), radii (N,),
    means2d (N,2); differentiable through _WarpRasterize."""
    fr = _Frame(viewmat, K, width, height, degree, near, far, means.device)
    holder = means2d_grad_holder
    if holder is None:
        holder = torch.zeros(means.shape[0], 2, dtype=torch.float32, device=means.device)
    return _WarpRasterize.apply(means, quats, scales, opacities, sh, holder, fr)
