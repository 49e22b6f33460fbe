"""Moving-part masks for structure from motion: pixels whose motion the camera's own motion cannot explain.

For each pair of neighbouring frames, dense optical flow (OpenCV's DIS) is checked forwards and backwards; the
camera's motion is fitted to the consistent flow as a fundamental matrix, or as a homography when the views
barely translate (a near-static or rotating camera, where a fundamental matrix is ill-posed and would absorb
the movers). Pixels far from that model (away from motion edges, where flow smears) or whose flow disagrees
forwards and backwards are candidates; a pixel is moving when both of its frame's pairs say so (an occlusion
shows on one side only), only blobs large enough to be an object are kept, and each is tracked along the flow
to nearby frames (a mover sliding along the epipolar lines is invisible to any two-view test). Masks grow by a
margin, since a SIFT feature sees a patch around it; COLMAP then extracts no feature there (run_sfm's `masks`).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from twin_kit import opt


@dataclass
class MotionMaskConfig:
    """Moving-part detection settings (measured on the dynamic synthetic capture and the bedroom video)."""

    max_side: int = opt(480, "flow working resolution: longest side in pixels", low=64)
    residual_px: float = opt(1.5, "a pixel further than this from the camera-motion model is a candidate (at "
                                  "max_side), or 3 robust sigmas of the model's own residuals if larger", low=0,
                             low_open=True)
    fb_px: float = opt(1.0, "forward-backward flow disagreement above this is a candidate too", low=0,
                       low_open=True)
    min_consistent: float = opt(0.6, "a pair whose flow agrees forwards and backwards on less of the image is "
                                      "skipped (views too far apart for flow to be trusted)", low=0, high=1)
    edge_gradient: float = opt(0.3, "flow changing faster than this (pixels per pixel) marks a motion edge",
                               low=0, low_open=True)
    edge_band: float = opt(0.01, "pixels this close to a motion edge (fraction of the diagonal) are not "
                                 "judged: flow there is unreliable", low=0, high=0.2)
    homography_ratio: float = opt(0.9, "use the homography when it explains at least this fraction of what "
                                       "the fundamental matrix explains (little translation)", low=0, high=1)
    min_width: float = opt(0.03, "thinner candidate regions are dropped (fraction of the image diagonal): "
                                 "flow errors along depth edges and occlusions form bands, movers form blobs",
                           low=0, high=0.5)
    min_area: float = opt(0.01, "smallest moving blob kept, as a fraction of the image", low=0, high=1)
    track_frames: int = opt(3, "a detection is carried along the flow this many frames forwards and backwards",
                            low=0)
    margin: float = opt(0.015, "mask grown by this fraction of the image diagonal", low=0, high=0.2)
    max_fraction: float = opt(0.5, "a frame with more than this masked is left unmasked: the camera model "
                                   "failed there, and masking it would starve SfM", low=0, high=1)


@dataclass
class MotionMasks:
    """Per-frame masks (True = moving, at each frame's resolution) and what the detector saw."""

    masks: list[np.ndarray | None]  # None: frame left unmasked (no detection, or over max_fraction)
    fractions: list[float]  # masked fraction of each frame (0 where None)
    models: list[str]  # per neighbouring pair: "fundamental", "homography" or "none"
    rejected: list[int]  # frames whose detection covered more than max_fraction (left unmasked)

    def by_name(self, names: list[str]) -> dict[str, np.ndarray]:
        return {n: m for n, m in zip(names, self.masks) if m is not None}


def _grey(image: np.ndarray, max_side: int) -> np.ndarray:
    g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    h, w = g.shape
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        g = cv2.resize(g, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return g


def _pair_candidates(a: np.ndarray, b: np.ndarray, fwd: np.ndarray, bwd: np.ndarray, cfg: MotionMaskConfig
                     ) -> tuple[np.ndarray, np.ndarray, str, np.ndarray, np.ndarray]:
    """Candidate-moving pixels of frame a and of frame b (bool, their own grids), the model used, and where
    each frame's flow agrees forwards and backwards."""
    h, w = a.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)

    def check(f: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        mx, my = xs + f[..., 0], ys + f[..., 1]
        inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        back = cv2.remap(g, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        fb = np.hypot(f[..., 0] + back[..., 0], f[..., 1] + back[..., 1])
        return mx, my, (fb <= cfg.fb_px) & inside, inside & (fb > cfg.fb_px)  # leaving the view is not moving

    mxa, mya, good_a, fbbad_a = check(fwd, bwd)
    mxb, myb, good_b, fbbad_b = check(bwd, fwd)
    step = max(2, round(max(h, w) / 120))  # about 120 x 90 samples: plenty for two RANSAC fits
    pick = np.zeros_like(good_a)
    pick[::step, ::step] = True
    pick &= good_a
    if pick.sum() < 50 or good_a.mean() < cfg.min_consistent or good_b.mean() < cfg.min_consistent:
        return np.zeros((h, w), bool), np.zeros((h, w), bool), "none", good_a, good_b  # views too far apart
    p1 = np.stack([xs[pick], ys[pick]], 1)
    p2 = np.stack([mxa[pick], mya[pick]], 1)
    F, inl_f = cv2.findFundamentalMat(p1, p2, cv2.USAC_MAGSAC, 1.0, 0.999, 2000)
    H, inl_h = cv2.findHomography(p1, p2, cv2.USAC_MAGSAC, 1.0, maxIters=2000, confidence=0.999)
    nf = int(inl_f.sum()) if F is not None and F.shape == (3, 3) else 0
    nh = int(inl_h.sum()) if H is not None else 0
    if max(nf, nh) < 30:
        return np.zeros((h, w), bool), np.zeros((h, w), bool), "none", good_a, good_b
    use_h = nh >= cfg.homography_ratio * nf
    if use_h:
        ra = _transfer_error(H, xs, ys, mxa, mya)
        rb = _transfer_error(np.linalg.inv(H), xs, ys, mxb, myb)
    else:
        ra = _sampson(F, xs, ys, mxa, mya)
        rb = _sampson(F.T, xs, ys, mxb, myb)
    inl = (inl_h if use_h else inl_f).ravel().astype(bool)
    sigma = 1.4826 * float(np.median(ra[pick][inl]))  # the model's own noise (flow error, lens distortion)
    thr = max(cfg.residual_px, 3.0 * sigma)
    model = "homography" if use_h else "fundamental"
    far_a, far_b = ~_flow_edges(fwd, cfg), ~_flow_edges(bwd, cfg)
    cand_a = (ra > thr) & good_a & far_a | fbbad_a
    cand_b = (rb > thr) & good_b & far_b | fbbad_b
    return cand_a, cand_b, model, good_a, good_b


def _flow_edges(f: np.ndarray, cfg: MotionMaskConfig) -> np.ndarray:
    """Pixels near a jump in the flow (depth edges, occlusions): flow there is smeared across the edge and
    disagrees with any camera model, so a static scene with depth would light up along its edges."""
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    g = np.sqrt((gx ** 2 + gy ** 2).sum(-1))
    edge = (g > cfg.edge_gradient).astype(np.uint8)
    r = max(1, round(cfg.edge_band * np.hypot(*f.shape[:2])))
    return cv2.dilate(edge, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0


def _sampson(F: np.ndarray, xs, ys, mx, my) -> np.ndarray:
    """First-order distance (pixels) of each pixel's flow correspondence from the epipolar geometry F."""
    a = F[0, 0] * xs + F[0, 1] * ys + F[0, 2]
    b = F[1, 0] * xs + F[1, 1] * ys + F[1, 2]
    c = F[2, 0] * xs + F[2, 1] * ys + F[2, 2]
    at = F[0, 0] * mx + F[1, 0] * my + F[2, 0]
    bt = F[0, 1] * mx + F[1, 1] * my + F[2, 1]
    num = np.abs(mx * a + my * b + c)
    return num / np.sqrt(np.maximum(a * a + b * b + at * at + bt * bt, 1e-18))


def _transfer_error(H: np.ndarray, xs, ys, mx, my) -> np.ndarray:
    """Distance (pixels) between where H sends each pixel and where the flow sends it."""
    z = H[2, 0] * xs + H[2, 1] * ys + H[2, 2]
    z = np.where(np.abs(z) < 1e-9, 1e-9, z)
    u = (H[0, 0] * xs + H[0, 1] * ys + H[0, 2]) / z
    v = (H[1, 0] * xs + H[1, 1] * ys + H[1, 2]) / z
    return np.hypot(u - mx, v - my)


def _clean(cand: np.ndarray, cfg: MotionMaskConfig) -> np.ndarray:
    """Candidates -> object-sized blobs, grown by the margin."""
    h, w = cand.shape
    k = max(3, round(cfg.min_width * np.hypot(h, w))) | 1
    m = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= cfg.min_area * h * w
    return keep[lab].astype(bool)


def _grow(m: np.ndarray, margin: float) -> np.ndarray:
    r = round(margin * np.hypot(*m.shape))
    if r <= 0 or not m.any():
        return m
    return cv2.dilate(m.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0


def _track(found: list[np.ndarray | None], links: list, frames: int) -> list[np.ndarray | None]:
    """Carry each detection along the flow to the next and previous `frames` frames: a mover that moves along
    the epipolar lines for a while (invisible to the two-view test) stays masked while it is tracked. Only
    pixels whose flow agrees both ways are carried: a background pixel the mover uncovers has no match there."""
    out = [None if m is None else m.copy() for m in found]
    for _ in range(frames):
        prev = [None if m is None else m.copy() for m in out]
        for i in range(len(out)):
            got = [] if out[i] is None else [out[i]]
            if i > 0 and links[i - 1] is not None and prev[i - 1] is not None:
                _, bwd, _, good = links[i - 1]
                got.append(_pull(prev[i - 1], bwd) & good)  # frame i's pixels in frame i-1
            if i + 1 < len(out) and links[i] is not None and prev[i + 1] is not None:
                fwd, _, good, _ = links[i]
                got.append(_pull(prev[i + 1], fwd) & good)  # frame i's pixels in frame i+1
            if got:
                out[i] = np.logical_or.reduce(got)
    return out


def _pull(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Mask of another frame sampled where `flow` (this frame -> that frame) sends each of this frame's pixels."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(mask.astype(np.uint8), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_NEAREST,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0


def motion_masks(images: list[np.ndarray], cfg: MotionMaskConfig | None = None) -> MotionMasks:
    """Masks of the moving parts of an ordered sequence of frames (RGB or grey uint8, capture order)."""
    cfg = cfg or MotionMaskConfig()
    greys = [_grey(im, cfg.max_side) for im in images]
    n = len(greys)
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    votes: list[list[np.ndarray]] = [[] for _ in range(n)]
    models = []
    links: list[tuple | None] = []  # per trusted pair: flows i -> i+1, i+1 -> i, and where each is consistent
    for i in range(n - 1):
        if greys[i].shape != greys[i + 1].shape:
            models.append("none")
            links.append(None)
            continue
        fwd, bwd = flow.calc(greys[i], greys[i + 1], None), flow.calc(greys[i + 1], greys[i], None)
        ca, cb, model, good_a, good_b = _pair_candidates(greys[i], greys[i + 1], fwd, bwd, cfg)
        models.append(model)
        links.append((fwd, bwd, good_a, good_b) if model != "none" else None)
        if model != "none":
            votes[i].append(ca)
            votes[i + 1].append(cb)
    # both neighbours must agree (an occlusion shows on one side only): an end frame, or one beside an untrusted
    # pair, detects nothing itself and gets only what tracking carries to it
    found = [_clean(v[0] & v[1], cfg) if len(v) == 2 else None for v in votes]
    found = _track(found, links, cfg.track_frames)
    masks: list[np.ndarray | None] = []
    fractions, rejected = [], []
    for i, (im, m) in enumerate(zip(images, found)):
        if m is None:
            masks.append(None)
            fractions.append(0.0)
            continue
        m = _grow(_clean(m, cfg), cfg.margin)  # tracking leaves thin bands where flow bleeds over edges
        frac = float(m.mean())
        if frac > cfg.max_fraction:
            rejected.append(i)
            m, frac = None, 0.0
        elif frac == 0.0:
            m = None
        if m is not None and m.shape != im.shape[:2]:
            m = cv2.resize(m.astype(np.uint8), (im.shape[1], im.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        masks.append(m)
        fractions.append(frac)
    return MotionMasks(masks, fractions, models, rejected)
