"""Loop-closure candidates without a downloaded vocabulary: VLAD of each image's own SIFT descriptors.

A small k-means codebook is trained on descriptors of this very capture; each image becomes one
power- and L2-normalised VLAD vector, and its most similar images far from it in capture order are the
pairs worth matching (the place where an orbit closes, or a walk comes back).
"""
from __future__ import annotations

import cv2
import numpy as np


def vlad(descriptors: list[np.ndarray], num_words: int = 32, sample: int = 60000, seed: int = 0) -> np.ndarray:
    """(N, num_words * D) VLAD vectors, one per image, from each image's (n_i, D) descriptors."""
    rng = np.random.default_rng(seed)
    dim = next((d.shape[1] for d in descriptors if d.ndim == 2 and len(d)), 128)
    alld = np.concatenate([d for d in descriptors if len(d)] or [np.zeros((0, dim))]).astype(np.float32)
    out = np.zeros((len(descriptors), num_words * dim), np.float32)
    if len(alld) < num_words:
        return out
    pick = alld[rng.choice(len(alld), min(sample, len(alld)), replace=False)]
    cv2.setRNGSeed(seed)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 15, 1e-3)
    _, _, centres = cv2.kmeans(pick, num_words, None, crit, 1, cv2.KMEANS_PP_CENTERS)
    c2 = (centres ** 2).sum(1)
    for i, d in enumerate(descriptors):
        if not len(d):
            continue
        d = d.astype(np.float32)
        word = np.argmin(c2[None, :] - 2.0 * d @ centres.T, axis=1)
        res = np.zeros((num_words, dim), np.float32)
        np.add.at(res, word, d - centres[word])
        res /= np.maximum(np.linalg.norm(res, axis=1, keepdims=True), 1e-12)  # intra-normalisation
        v = res.ravel()
        v = np.sign(v) * np.sqrt(np.abs(v))
        out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
    return out


def retrieval_pairs(vectors: np.ndarray, k: int, min_index_gap: int = 0) -> list[tuple[int, int]]:
    """Each image's k most similar others (cosine of global vectors) at least min_index_gap apart, as i<j pairs."""
    n = len(vectors)
    if n < 2 or k <= 0:
        return []
    S = vectors @ vectors.T
    idx = np.arange(n)
    S[np.abs(idx[:, None] - idx[None, :]) <= min_index_gap] = -np.inf
    S[(np.linalg.norm(vectors, axis=1) == 0)] = -np.inf
    kk = min(k, n - 1)
    top = np.argsort(-S, axis=1)[:, :kk]
    pairs = set()
    for i in range(n):
        for j in top[i]:
            if np.isfinite(S[i, j]):
                pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs)
