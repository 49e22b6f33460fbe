"""The procedural restyler: a new appearance for a rendered episode from its control maps, on the CPU.

Per segment: the table (scene pixels on the support plane) gets a world-fixed texture, the rest of the scene a
colour grade, the robot and task objects new colours with solid noise; distractors are ray cast onto the table;
then every pixel is relit (Lambert, the original as albedo) in the light's colour, and the camera adds white
balance, vignetting, blur and noise. Labels and geometry never change: `restyle_labelled` returns the input
segmentation and depth, or new ones where distractors were added (class SEG_DISTRACTOR there).

Vectorised torch over (frames, rows, columns), in chunks of frames. Speed comes from doing per-pixel work only
where a family needs it (index lists of the table, robot and object pixels), folding every per-pixel scale
(light, shadow, vignette) into one single-channel factor and every per-channel one (light colour, white
balance) into one vector, and from a fixed camera's ray directions, distractor hits and shadows being computed
once per call rather than per frame.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from policies.restyle.distractors import (
    Placed,
    intersect,
    place,
    screen_box,
    shadow_candidates,
    standing_spots,
    task_region,
)
from policies.restyle.families import OBJECT_PALETTES, SURFACE_PALETTES, TABLE_PALETTES, Style, SurfaceTexture
from policies.restyle.geometry import (
    TABLE_MIN_UP,
    TABLE_TOL_M,
    camera_rays,
    facing_camera,
    normals_from_points,
    table_mask,
    world_points,
)
from policies.restyle.shading import (
    LUMA,
    REFERENCE_LIGHT,
    frame_noise,
    gaussian_blur,
    grade_affine,
    lambert,
    light_direction,
    light_rgb,
    noise_bank,
    shoulder_,
    up_cos,
    vignette,
)
from policies.restyle.textures import noise_cube, sample_noise, sample_table, table_pyramid
from twin_kit import InputError, torch_threads

# Segmentation classes of sim.sensors.cameras (SensorFrame.seg), and the one restyling adds.
SEG_NONE, SEG_SCENE, SEG_ROBOT, SEG_OBJECT = 0, 1, 2, 3
SEG_DISTRACTOR = 4
_TABLE = 5  # internal label of table pixels
CHUNK = 16  # frames per pass: a chunk's tensors stay in the CPU's cache at 128 x 128


@dataclass
class Restyled:
    """A restyled episode: new RGB, and the labels that go with it (inputs unchanged unless distractors)."""

    rgb: torch.Tensor     # (T, H, W, 3) float32 in [0, 1]
    seg: torch.Tensor     # (T, H, W) the input classes, SEG_DISTRACTOR where a distractor is visible
    depth: torch.Tensor   # (T, H, W, 1) the input depth, the distractor's depth where one is visible
    placed: int = 0       # distractors standing on the table


def restyle(rgb: torch.Tensor, maps: dict, style: Style, threads: int | None = None) -> torch.Tensor:
    """(T, H, W, 3) the frames under `style`; see `restyle_labelled` for the maps and the labels."""
    return restyle_labelled(rgb, maps, style, threads).rgb


def _palette(table: dict, name: str):
    for split in table.values():
        if name in split:
            return split[name]
    raise InputError(f"style: unknown palette {name!r}")


def _check(rgb: torch.Tensor, maps: dict, style: Style):
    """The inputs as tensors of agreeing shapes (one-line errors otherwise)."""
    if not isinstance(rgb, torch.Tensor) or rgb.dim() != 4 or rgb.shape[-1] != 3:
        raise InputError(f"restyle: rgb must be a (T, H, W, 3) tensor, got {getattr(rgb, 'shape', type(rgb))}")
    if not rgb.is_floating_point():
        raise InputError(f"restyle: rgb must be float in [0, 1], got {rgb.dtype}")
    T, H, W, _ = rgb.shape
    for k in ("depth", "seg", "K"):
        if maps.get(k) is None:
            raise InputError(f"restyle: maps has no {k!r}")
    depth, seg = torch.as_tensor(maps["depth"]), torch.as_tensor(maps["seg"])
    if depth.shape != (T, H, W, 1) or seg.shape != (T, H, W):
        raise InputError(f"restyle: depth {tuple(depth.shape)} / seg {tuple(seg.shape)} do not match rgb "
                         f"{tuple(rgb.shape)} (want (T, H, W, 1) and (T, H, W))")
    normal = maps.get("normal")
    if normal is not None:
        normal = torch.as_tensor(normal).float()
        if normal.shape != (T, H, W, 3):
            raise InputError(f"restyle: normal {tuple(normal.shape)} is not (T, H, W, 3)")
    K = torch.as_tensor(maps["K"], dtype=torch.float32)
    w2c = torch.as_tensor(maps.get("world_to_cam", torch.eye(4)), dtype=torch.float32)
    if w2c.dim() == 2:
        w2c = w2c[None].expand(T, 4, 4)
    if K.shape != (3, 3) or w2c.shape != (T, 4, 4):
        raise InputError(f"restyle: K must be (3, 3) and world_to_cam (4, 4) or (T, 4, 4), got "
                         f"{tuple(K.shape)} and {tuple(w2c.shape)}")
    sh = maps.get("support_height")
    if sh is None and (style.table_texture is not None or style.distractors is not None):
        raise InputError("restyle: the table texture and distractors need maps['support_height'] (table z, m)")
    return depth.float(), seg, normal, K, w2c, (None if sh is None else float(sh))


@dataclass
class CallState:
    """What is computed once per call: references, so every chunk and frame is styled alike, and the work a
    fixed camera lets us share between frames."""

    K: torch.Tensor
    w2c: torch.Tensor
    support_height: float | None
    fixed: bool                      # one camera pose for every frame
    centres: torch.Tensor | None     # fixed camera: (1, 3) centre and (1, H, W, 3) ray directions
    dirs: torch.Tensor | None
    table_ref: float = 0.5           # luminance quantiles the recolours normalise by
    robot_ref: float = 0.5
    footprint_m: float = 0.01        # a table pixel's size on the table (texture filtering)
    placed: Placed | None = None
    hits: tuple | None = None        # fixed camera: distractor (box, t, cos, colour) of every pixel in its box
    lit: torch.Tensor | None = None  # fixed camera: (H, W) 1 = scene point sees the key light
    noise: torch.Tensor | None = None
    vignette: torch.Tensor | None = None
    colour: torch.Tensor | None = None  # (3,) light colour x white balance
    pyramid: tuple | None = None        # the table texture's mip levels


def _rays(call: CallState, w2c: torch.Tensor, H: int, W: int):
    if call.fixed:
        return call.centres, call.dirs
    return camera_rays(call.K, w2c, H, W)


def _quantile(v: torch.Tensor, q: float) -> float:
    if v.numel() == 0:
        return 0.5
    return max(float(torch.quantile(v[:: max(1, v.numel() // 200_000)], q)), 1e-3)


def prepare_call(rgb, depth, seg, normal, K, w2c, sh, style: Style) -> CallState:
    """References from a few frames, the distractors' places, and a fixed camera's shared work."""
    T, H, W, _ = rgb.shape
    fixed = bool((w2c == w2c[:1]).all())
    call = CallState(K, w2c, sh, fixed, None, None)
    if fixed:
        call.centres, call.dirs = camera_rays(K, w2c[:1], H, W)
    pick = torch.linspace(0, T - 1, min(T, 8)).round().long().unique()
    centres, dirs = _rays(call, w2c[pick], H, W)
    P = world_points(depth[pick], centres, dirs)
    n = normals_from_points(P) if normal is None else normal[pick]
    n = facing_camera(n, P, centres)
    s = seg[pick]
    table = (table_mask(P, n, s == SEG_SCENE, sh) if sh is not None else torch.zeros_like(s, dtype=torch.bool))
    lum = rgb[pick] @ LUMA
    call.table_ref = _quantile(lum[table], 0.5)
    call.robot_ref = _quantile(lum[s == SEG_ROBOT], 0.9)
    fx = float(K[0, 0])
    if table.any():
        call.footprint_m = float(torch.median(depth[pick][table][:, 0])) / fx
    if style.distractors is not None and sh is not None:
        stand, Q, zq = standing_spots(P[0], table[0], depth[0, ..., 0], centres[0], dirs[0], s[0] <= SEG_SCENE,
                                      s[0] == SEG_OBJECT, sh)
        region = task_region(s[0] == SEG_OBJECT, centres[0], dirs[0], depth[0, ..., 0])
        call.placed = place(style.distractors, Q, stand, zq, fx, sh, style.seed, keep_visible=region)
        if len(call.placed) == 0:
            call.placed = None
    light = style.light_intensity or REFERENCE_LIGHT
    if call.placed is not None and fixed:
        box = screen_box(call.placed, K, w2c[:1], H, W)
        if box is not None:
            y0, y1, x0, x1 = box
            db = call.dirs[:, y0:y1, x0:x1]
            t, k, dn = intersect(call.centres[:, None, None, :].expand_as(db), db, call.placed)
            call.hits = (box, t, dn @ light_direction(light), call.placed.colour[k])
        # shadows on the static scene: each pixel's scene point from the first picked frame that shows it
        scene = s == SEG_SCENE
        first = scene.float().argmax(0)
        Ps = torch.gather(P, 0, first[None, ..., None].expand(1, H, W, 3))[0]
        ns = torch.gather(n, 0, first[None, ..., None].expand(1, H, W, 3))[0]
        call.lit = _shadow(Ps, ns, scene.any(0), call.placed, light)
    tt = style.table_texture
    if tt is not None:  # built here, once, rather than by several chunk threads at the same time
        call.pyramid = table_pyramid(tt.kind, *_palette(TABLE_PALETTES, tt.palette), round(tt.scale_m, 6), style.seed)
    for tex, salt in ((style.robot_texture, 11), (style.object_texture, 13)):
        if tex is not None and tex.speckle > 0:
            noise_cube(style.seed + salt)
    cam = style.camera
    if cam is not None:
        if cam.noise_std > 0:
            call.noise = noise_bank(H, W, style.seed) * cam.noise_std
        if cam.vignette > 0:
            call.vignette = vignette(H, W, cam.vignette)
    colour = torch.ones(3)
    if style.light_colour is not None:
        colour = colour * light_rgb(style.light_colour.kelvin, style.light_colour.tint)
    if cam is not None:
        colour = colour * torch.tensor([cam.wb_red, 1.0, cam.wb_blue])
    call.colour = colour
    return call


def _shadow(P: torch.Tensor, n: torch.Tensor, scene: torch.Tensor, placed: Placed, light) -> torch.Tensor:
    """(...) 1 where a scene point sees the key light, 0 where a distractor shades it."""
    lit = torch.ones(P.shape[:-1])
    cand = shadow_candidates(P, placed, light.elevation_deg) & scene & (n.abs().sum(-1) > 0)
    if not cand.any():
        return lit
    pts = P[cand] + torch.tensor([0.0, 0.0, 1e-3])
    t, _, _ = intersect(pts, light_direction(light).expand_as(pts), placed)
    lit[cand] = torch.isinf(t).float()
    return lit


def restyle_labelled(rgb: torch.Tensor, maps: dict, style: Style, threads: int | None = None) -> Restyled:
    """An episode's frames restyled, with its labels.

    rgb: (T, H, W, 3) float in [0, 1]. maps: depth (T, H, W, 1) metres (inf = no hit), seg (T, H, W) int
    (SEG_* classes), normal (T, H, W, 3) world normals or None (then derived from depth), K (3, 3),
    world_to_cam (T, 4, 4) or (4, 4) (default identity), support_height: the table plane's world z in metres
    (needed by the table texture and the distractors). Deterministic given the style, whatever `threads`.
    The input tensors are never modified; a vanilla style returns them as they are.

    threads: Python threads the chunks of frames are spread over, each running torch on one thread (small
    per-frame tensors pay more for torch's fork/join than for the work; 10x slower on a busy CPU). None: as many
    as torch's thread count.
    """
    depth, seg, normal, K, w2c, sh = _check(rgb, maps, style)
    if style.is_vanilla:
        return Restyled(rgb, seg, torch.as_tensor(maps["depth"]))
    workers = torch.get_num_threads() if threads is None else max(1, int(threads))
    rgb = rgb.float()
    with torch_threads(1):
        call = prepare_call(rgb, depth, seg, normal, K, w2c, sh, style)
        out = torch.empty_like(rgb)
        seg_out, depth_out = seg, torch.as_tensor(maps["depth"])
        if call.placed is not None:
            seg_out, depth_out = seg.clone(), depth.clone()

        def run(s: int) -> None:
            sl = slice(s, s + CHUNK)
            nrm = None if normal is None else normal[sl]
            out[sl], vis, t = restyle_chunk(rgb[sl], depth[sl], seg[sl], nrm, w2c[sl], style, call, s)
            if vis is not None:
                (y0, y1, x0, x1), v = vis
                seg_out[sl, y0:y1, x0:x1][v] = SEG_DISTRACTOR
                depth_out[sl, y0:y1, x0:x1][v] = t[v][:, None]

        starts = range(0, rgb.shape[0], CHUNK)
        if workers == 1 or len(starts) == 1:
            for s in starts:
                run(s)
        else:
            with ThreadPoolExecutor(min(workers, len(starts))) as pool:
                list(pool.map(run, starts))
    return Restyled(out, seg_out, depth_out, 0 if call.placed is None else len(call.placed))


def _recolour(flat: torch.Tensor, idx: torch.Tensor, P: torch.Tensor, tex: SurfaceTexture, palette: dict,
              ref: float, seed: int) -> torch.Tensor:
    """(M, 3) new colours of pixels idx: palette colour x original luminance (normalised by ref) x speckle."""
    lum = (flat.index_select(0, idx) @ LUMA / ref).clamp(0, 1.5)[:, None]
    col = torch.tensor(_palette(palette, tex.palette)) * lum
    if tex.speckle > 0:
        nz = sample_noise(noise_cube(seed), P, tex.scale_cm / 100.0)
        col = col * (1 + tex.speckle * 2 * (nz - 0.5))[:, None]
    return col


# The colour object palettes are measured from: Twin's task cube (assets/objects/cube). An object style turns
# every object pixel about the grey axis by the angle that takes this colour to the palette's, so the cube takes
# the palette colour and the other objects (a target zone, a bin) keep their distinct hues relative to it.
REFERENCE_OBJECT = (0.85, 0.15, 0.10)


def hue_turn(palette_rgb) -> torch.Tensor:
    """(3, 3) linear map of RGB taking REFERENCE_OBJECT to `palette_rgb`: a rotation about the grey axis with
    the chroma scaled and the grey level scaled, both by the ratio of the two colours'."""
    g = torch.full((3,), 3 ** -0.5, dtype=torch.float64)
    ref, pal = torch.tensor(REFERENCE_OBJECT, dtype=torch.float64), torch.tensor(palette_rgb, dtype=torch.float64)
    grey = torch.outer(g, g)
    cr, cp = ref - grey @ ref, pal - grey @ pal
    cos = float(cr @ cp) / max(float(cr.norm() * cp.norm()), 1e-12)
    sin = float(torch.linalg.cross(cr, cp) @ g) / max(float(cr.norm() * cp.norm()), 1e-12)
    k = torch.tensor([[0.0, -g[2], g[1]], [g[2], 0.0, -g[0]], [-g[1], g[0], 0.0]], dtype=torch.float64)
    rot = torch.eye(3, dtype=torch.float64) + sin * k + (1 - cos) * (k @ k)   # Rodrigues, about g
    chroma = float(cp.norm() / cr.norm())
    level = float((g @ pal) / (g @ ref))
    return (level * grey + chroma * rot @ (torch.eye(3, dtype=torch.float64) - grey)).float()


def _turn_objects(flat: torch.Tensor, idx: torch.Tensor, P: torch.Tensor, tex: SurfaceTexture, seed: int):
    """(M, 3) new colours of object pixels idx: hue-turned so the cube takes the palette colour, x speckle."""
    col = (flat.index_select(0, idx) @ hue_turn(_palette(OBJECT_PALETTES, tex.palette)).T).clamp(0, 1.5)
    if tex.speckle > 0:
        nz = sample_noise(noise_cube(seed), P, tex.scale_cm / 100.0)
        col = col * (1 + tex.speckle * 2 * (nz - 0.5))[:, None]
    return col


def _points(idx: torch.Tensor, depth: torch.Tensor, centres: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """(M, 3) world points of flat pixel indices idx of a (T, H, W) chunk (dirs (T or 1, H, W, 3))."""
    hw = dirs.shape[1] * dirs.shape[2]
    frame = idx // hw
    d = dirs.reshape(-1, 3).index_select(0, idx if dirs.shape[0] > 1 else idx % hw)
    return centres.index_select(0, frame if centres.shape[0] > 1 else frame * 0) + depth.reshape(-1, 1)[idx] * d


def _distractor_hits(call: CallState, w2c, centres, dirs, light):
    """(box, t, cos, colour) of the distractors over their screen box in this chunk, or None."""
    if call.fixed:
        return call.hits
    box = screen_box(call.placed, call.K, w2c, *dirs.shape[1:3])
    if box is None:
        return None
    y0, y1, x0, x1 = box
    db = dirs[:, y0:y1, x0:x1]
    t, k, dn = intersect(centres[:, None, None, :].expand_as(db), db, call.placed)
    return box, t, dn @ light_direction(light), call.placed.colour[k]


def restyle_chunk(rgb, depth, seg, normal, w2c, style: Style, call: CallState, first: int):
    """Frames [first, first + T) of the call restyled: (rgb, ((box), visible distractor mask) or None, t)."""
    T, H, W, _ = rgb.shape
    light = style.light_intensity
    shade_light = light or REFERENCE_LIGHT
    speckle = any(x is not None and x.speckle > 0 for x in (style.robot_texture, style.object_texture))
    table_apart = call.support_height is not None and style.background is not None  # the grade skips the table
    need_geo = (style.table_texture is not None or call.placed is not None or light is not None or speckle
                or table_apart)
    d0 = depth[..., 0]
    finite = torch.isfinite(d0)
    label = seg
    cos = None
    if need_geo:
        centres, dirs = _rays(call, w2c, H, W)
        if normal is None:
            P = world_points(depth, centres, dirs)
            n = facing_camera(normals_from_points(P), P, centres)
            sign = None
        else:
            n = normal
            sign = torch.where((n * dirs).sum(-1) > 0, -1.0, 1.0)      # facing the camera
        if call.support_height is not None:
            z = centres[:, None, None, 2] + d0 * dirs[..., 2]
            nz = n[..., 2] if sign is None else n[..., 2] * sign
            table = (seg == SEG_SCENE) & ((z - call.support_height).abs() <= TABLE_TOL_M) & (nz >= TABLE_MIN_UP)
            label = torch.where(table, _TABLE, seg)
        if light is not None or call.placed is not None:
            cos = n @ light_direction(shade_light)
            if sign is not None:
                cos = cos * sign
            cos = torch.where(finite, cos, up_cos(shade_light))
    flat_in = rgb.reshape(-1, 3)
    if style.background is not None:
        A, b = grade_affine(style.background.hue_deg, style.background.saturation,
                            style.background.exposure_ev, style.background.contrast)
        alb = shoulder_(torch.addmm(b, flat_in, A))
    else:
        alb = flat_in.clone()
    lab = label.reshape(-1)
    fg = torch.nonzero(lab >= SEG_ROBOT)[:, 0]          # robot, objects, table: everything but the background
    fg_lab = lab[fg]
    if style.background is not None and len(fg):
        alb.index_copy_(0, fg, flat_in.index_select(0, fg))
    tt = style.table_texture
    if tt is not None:
        idx = fg[fg_lab == _TABLE]
        if len(idx):
            xy = _points(idx, depth, centres, dirs)[:, :2]
            tex = sample_table(call.pyramid, xy, tt.rotation_deg, call.footprint_m)
            lum = (flat_in.index_select(0, idx) @ LUMA / call.table_ref).clamp(0.2, 2.0)[:, None]
            alb.index_copy_(0, idx, tex * lum**tt.detail)
    for fam, cls in (("robot_texture", SEG_ROBOT), ("object_texture", SEG_OBJECT)):
        tex = getattr(style, fam)
        idx = fg[fg_lab == cls] if tex is not None else fg[:0]
        if len(idx):
            P = _points(idx, depth, centres, dirs) if tex.speckle > 0 else None
            alb.index_copy_(0, idx, _recolour(flat_in, idx, P, tex, SURFACE_PALETTES, call.robot_ref, style.seed + 11)
                            if cls == SEG_ROBOT else _turn_objects(flat_in, idx, P, tex, style.seed + 13))
    alb = alb.view(T, H, W, 3)
    vis = t = None
    lit = None
    if call.placed is not None:
        hits = _distractor_hits(call, w2c, centres, dirs, shade_light)
        if call.lit is not None:
            lit = torch.where(seg == SEG_SCENE, call.lit, 1.0)
        else:
            lit = _shadow(world_points(depth, centres, dirs), n if sign is None else n * sign[..., None],
                          seg == SEG_SCENE, call.placed, shade_light)
        if hits is not None:
            (y0, y1, x0, x1), t, dcos, dcol = hits
            v = t < d0[:, y0:y1, x0:x1]
            vis = ((y0, y1, x0, x1), v)
            region = alb[:, y0:y1, x0:x1]
            region.copy_(torch.where(v[..., None], dcol, region))
            cos[:, y0:y1, x0:x1] = torch.where(v, dcos, cos[:, y0:y1, x0:x1])
            lit[:, y0:y1, x0:x1] = torch.where(v, 1.0, lit[:, y0:y1, x0:x1])
            t = t.expand_as(v)
    factor = None
    if light is not None:
        factor = lambert(cos, light, lit)
    elif lit is not None:  # the original light stays: only shadows darken, and distractors are shaded by it
        factor = lambert(cos, REFERENCE_LIGHT, lit) / lambert(cos, REFERENCE_LIGHT)
        if vis is not None:
            (y0, y1, x0, x1), v = vis
            c = cos[:, y0:y1, x0:x1]
            factor[:, y0:y1, x0:x1] = torch.where(v, lambert(c, REFERENCE_LIGHT), factor[:, y0:y1, x0:x1])
    if call.vignette is not None:
        factor = call.vignette.expand(T, H, W) if factor is None else factor * call.vignette
    if factor is not None:
        alb = alb * factor[..., None]
        if light is not None and light.gain > 1:
            shoulder_(alb)  # a brighter light rolls highlights off rather than clipping them
    alb = alb * call.colour
    cam = style.camera
    if cam is not None and cam.blur_px >= 0.3:
        alb = gaussian_blur(alb, cam.blur_px)
    if call.noise is not None:
        for i in range(T):
            alb[i] += frame_noise(call.noise, style.seed, first + i)
    return alb.clamp_(0, 1), vis, t
