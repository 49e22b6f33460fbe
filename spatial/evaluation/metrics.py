"""Pose and depth accuracy against a reference: similarity alignment, relative-pose AUC, ATE, AbsRel.

Relative-pose accuracy follows VGGT's RealEstate10K / CO3D evaluation: for every pair (i < j) of frames
present in both the estimate and the reference, the relative pose T_i T_j^-1 (world-to-camera) is formed in
each; the rotation error is the angle of the rotation between the two relative rotations, the translation
error the angle between the two relative translation directions with the sign ambiguity removed
(min(a, 180 - a)). AUC@T is the mean, over integer thresholds 1..T degrees, of the fraction of pairs whose
error is below the threshold, in percent; the combined `aucT` uses max(rotation, translation) per pair.
These numbers are invariant to any similarity transform of either world, so no alignment is needed.

The trajectory error (ATE) aligns estimated camera centres to the reference ones by a least-squares
similarity (Umeyama) and reports the RMSE of the residuals in reference units; `ate_rel` divides it by the
reference scene extent, defined as the largest distance between two matched reference camera centres
(the trajectory's diameter), so it is comparable across scenes of any scale.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from spatial.cameras import Camera

AUC_THRESHOLDS = (5, 15, 30)


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True, weights: np.ndarray | None = None
            ) -> np.ndarray:
    """4x4 similarity S (x' = s R x + t) minimising sum w_i ||S src_i - dst_i||^2 (Umeyama 1991; weighted when
    `weights` (N,) >= 0 are given, which need a positive sum; without them every w_i is 1)."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    if len(src) != len(dst) or len(src) < 2:
        raise ValueError(f"umeyama needs two equally long sets of >= 2 points, got {len(src)} and {len(dst)}")
    if weights is None:
        mu_s, mu_d = src.mean(0), dst.mean(0)
        xs, xd = src - mu_s, dst - mu_d
        cov = xd.T @ xs / len(src)
        var_s = float((xs ** 2).sum(1).mean())
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        total = w.sum()
        if len(w) != len(src) or not total > 0:
            raise ValueError(f"umeyama weights: need {len(src)} with a positive sum, got {len(w)} summing to {total}")
        w = w / total
        mu_s, mu_d = w @ src, w @ dst
        xs, xd = src - mu_s, dst - mu_d
        cov = (xd * w[:, None]).T @ xs
        var_s = float(w @ (xs ** 2).sum(1))
    U, D, Vt = np.linalg.svd(cov)
    E = np.ones(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        E[2] = -1.0
    R = (U * E) @ Vt
    s = float((D * E).sum() / var_s) if with_scale and var_s > 0 else 1.0
    S = np.eye(4)
    S[:3, :3] = s * R
    S[:3, 3] = mu_d - s * R @ mu_s
    return S


def apply_transform(S: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, 3) mapped by a 4x4 similarity."""
    return np.asarray(points, dtype=np.float64) @ S[:3, :3].T + S[:3, 3]


def umeyama_ransac(src: np.ndarray, dst: np.ndarray, threshold: float, iterations: int = 256,
                   with_scale: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Robust Umeyama: best 3-point hypothesis by inlier count (residual < threshold), refit on its inliers.

    Returns (S, inlier mask). For trajectories with a few badly registered frames.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    n = len(src)
    if n < 4:
        S = umeyama(src, dst, with_scale)
        return S, np.ones(n, dtype=bool)
    rng = np.random.default_rng(seed)
    best = np.zeros(n, dtype=bool)
    for _ in range(iterations):
        idx = rng.choice(n, 3, replace=False)
        if np.linalg.matrix_rank(src[idx] - src[idx].mean(0), tol=1e-9) < 2:
            continue
        S = umeyama(src[idx], dst[idx], with_scale)
        inl = np.linalg.norm(apply_transform(S, src) - dst, axis=1) < threshold
        if inl.sum() > best.sum():
            best = inl
    if best.sum() < 3:
        best = np.ones(n, dtype=bool)
    for _ in range(2):  # refit on the inliers, then re-select them once
        S = umeyama(src[best], dst[best], with_scale)
        inl = np.linalg.norm(apply_transform(S, src) - dst, axis=1) < threshold
        if inl.sum() < 3:
            break
        best = inl
    return S, best


def _rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Geodesic angle (degrees) between batches of rotation matrices."""
    tr = np.einsum("nij,nij->n", Ra, Rb)  # trace(Ra^T Rb)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def relative_pose_errors(est_w2c: np.ndarray, ref_w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair (i < j) relative rotation and translation-direction errors in degrees (VGGT protocol).

    A pair whose reference or estimated relative translation is zero has an undefined direction and
    scores 90 degrees (as VGGT's normalisation with an epsilon does).
    """
    est_w2c = np.asarray(est_w2c, dtype=np.float64)
    ref_w2c = np.asarray(ref_w2c, dtype=np.float64)
    i, j = np.triu_indices(len(ref_w2c), k=1)

    def rel(T):
        # T_i @ inv(T_j): camera j's frame expressed in camera i's frame
        R, t = T[:, :3, :3], T[:, :3, 3]
        Rij = R[i] @ np.transpose(R[j], (0, 2, 1))
        tij = t[i] - np.einsum("nab,nb->na", Rij, t[j])
        return Rij, tij

    Re, te = rel(est_w2c)
    Rr, tr = rel(ref_w2c)
    rot = _rotation_angle_deg(Re, Rr)
    ne, nr = np.linalg.norm(te, axis=1), np.linalg.norm(tr, axis=1)
    ok = (ne > 1e-12) & (nr > 1e-12)
    cos = np.zeros(len(i))
    cos[ok] = np.einsum("na,na->n", te[ok], tr[ok]) / (ne[ok] * nr[ok])
    ang = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return rot, np.minimum(ang, 180.0 - ang)


def auc(errors: np.ndarray, max_threshold: int) -> float:
    """Percent AUC of the error CDF: mean over thresholds 1..max_threshold (degrees) of P(error < threshold)."""
    errors = np.asarray(errors, dtype=np.float64).ravel()
    if errors.size == 0:
        return 0.0
    th = np.arange(1, int(max_threshold) + 1, dtype=np.float64)
    return float(np.mean(errors[None, :] < th[:, None]) * 100.0)


def _keys(cameras: Sequence[Camera], how: str) -> list[str]:
    if how == "name":
        return [os.path.basename(c.name) for c in cameras]
    if how == "stem":
        return [os.path.splitext(os.path.basename(c.name))[0] for c in cameras]
    return [os.path.basename(c.image or c.name) for c in cameras]


def match_cameras(est: Sequence[Camera], ref: Sequence[Camera]) -> list[tuple[Camera, Camera]]:
    """(estimated, reference) pairs with the same frame: by image basename of `name`, else by its stem
    (extension changed on re-encoding), else by the basename of `image`; the keying matching most wins."""
    best: list[tuple[Camera, Camera]] = []
    for how in ("name", "stem", "image"):
        ek, rk = _keys(est, how), _keys(ref, how)
        if len(set(ek)) != len(ek) or len(set(rk)) != len(rk):
            continue  # ambiguous keys under this scheme
        by_ref = dict(zip(rk, ref))
        pairs = [(e, by_ref[k]) for k, e in zip(ek, est) if k in by_ref]
        if len(pairs) > len(best):
            best = pairs
    return sorted(best, key=lambda p: os.path.basename(p[1].name))


def scene_extent(centres: np.ndarray) -> float:
    """Largest distance between two points (the set's diameter); hull vertices only when there are many."""
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    if len(c) < 2:
        return 0.0
    if len(c) > 64:
        try:
            from scipy.spatial import ConvexHull

            c = c[ConvexHull(c).vertices]
        except Exception:  # flat or collinear sets: fall back to a bounded subsample of the points
            c = c[:: max(1, len(c) // 2000)]
    d = np.linalg.norm(c[:, None, :] - c[None, :, :], axis=-1)
    return float(d.max())


def evaluate_poses(est: Sequence[Camera], ref: Sequence[Camera], n_total: int | None = None) -> dict:
    """Accuracy of estimated cameras against reference cameras, matched by image name.

    `registered_fraction` = matched frames / `n_total` (the number of input frames when known) or else
    / the number of reference frames. Relative-pose AUCs (percent) are over all pairs of matched frames;
    `ate` is the RMSE of camera centres after similarity alignment, in reference units; `ate_rel` is
    `ate` over the diameter of the matched reference camera centres. Metrics that need more matched
    frames than there are (2 for pairs, 3 for ATE) are None.
    """
    pairs = match_cameras(est, ref)
    n = len(pairs)
    denom = n_total if n_total else len(ref)
    out: dict = {"registered_fraction": (n / denom) if denom else 0.0, "n_matched": n,
                 "n_reference": len(ref), "n_estimated": len(est), "n_pairs": n * (n - 1) // 2}
    for k in AUC_THRESHOLDS:
        out[f"rra_auc{k}"] = out[f"rta_auc{k}"] = out[f"auc{k}"] = None
    out["ate"] = out["ate_rel"] = None
    if n >= 2:
        Te = np.stack([e.world_to_cam for e, _ in pairs])
        Tr = np.stack([r.world_to_cam for _, r in pairs])
        rot, tra = relative_pose_errors(Te, Tr)
        both = np.maximum(rot, tra)
        for k in AUC_THRESHOLDS:
            out[f"rra_auc{k}"] = auc(rot, k)
            out[f"rta_auc{k}"] = auc(tra, k)
            out[f"auc{k}"] = auc(both, k)
        out["rot_err_median_deg"] = float(np.median(rot))
        out["trans_err_median_deg"] = float(np.median(tra))
    if n >= 3:
        ce = np.stack([e.center for e, _ in pairs])
        cr = np.stack([r.center for _, r in pairs])
        S = umeyama(ce, cr, with_scale=True)
        res = np.linalg.norm(apply_transform(S, ce) - cr, axis=1)
        ate = float(np.sqrt(np.mean(res ** 2)))
        ext = scene_extent(cr)
        out["ate"] = ate
        out["ate_rel"] = ate / ext if ext > 0 else None
        out["extent"] = ext
    return out


def depth_absrel(pred, gt, mask=None) -> float:
    """Mean |pred - gt| / gt over pixels where both depths are finite and > 0 (and `mask` is set); NaN if none."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        pred, gt = np.squeeze(pred), np.squeeze(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"depth shapes differ: {pred.shape} vs {gt.shape}")
    valid = np.isfinite(pred) & np.isfinite(gt) & (pred > 0) & (gt > 0)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool).reshape(valid.shape)
    if not valid.any():
        return float("nan")
    return float(np.mean(np.abs(pred[valid] - gt[valid]) / gt[valid]))
