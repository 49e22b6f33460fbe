"""Densification strategies: how the set of Gaussians grows, shrinks and moves during training.

Parameters are a dict name -> torch.nn.Parameter (means, quats, log_scales, opacity_logits, sh_dc, sh_rest),
each with its own torch.optim.Adam. Every edit of the set goes through `_edit_rows` so that the Adam moments
(exp_avg, exp_avg_sq) always have the same rows as their parameter. A strategy is a documented @dataclass
with its per-Gaussian state in a plain dict (so that it is checkpointed with torch.save).

- DefaultStrategy: the adaptive density control of 3DGS (Kerbl et al. 2023).
- MCMCStrategy: relocation of dead Gaussians plus noise (Kheradmand et al. 2024, "3DGS as MCMC").
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from twin_kit import quat_to_rotmat

Params = dict[str, torch.nn.Parameter]
Optims = dict[str, torch.optim.Optimizer]


# ---------------------------------------------------------------------------------------------- set editing

def _edit_rows(params: Params, optims: Optims, param_fn: Callable[[str, torch.Tensor], torch.Tensor],
               state_fn: Callable[[str, torch.Tensor], torch.Tensor]) -> None:
    """Replace every parameter by param_fn(name, data) and every Adam moment by state_fn(name, moment)."""
    for name in list(params):
        old = params[name]
        new = torch.nn.Parameter(param_fn(name, old.data), requires_grad=old.requires_grad)
        opt = optims[name]
        st = opt.state.pop(old, None)
        for group in opt.param_groups:
            group["params"] = [new if p is old else p for p in group["params"]]
        if st is not None:
            opt.state[new] = {k: (state_fn(name, v) if torch.is_tensor(v) and v.dim() > 0 else v)
                              for k, v in st.items()}
        params[name] = new


def append_rows(params: Params, optims: Optims, rows: dict[str, torch.Tensor]) -> None:
    """Add Gaussians (rows per parameter name); their Adam moments start at zero."""
    _edit_rows(params, optims, lambda n, p: torch.cat([p, rows[n].to(p)]),
               lambda n, v: torch.cat([v, torch.zeros((len(rows[n]),) + v.shape[1:], dtype=v.dtype,
                                                      device=v.device)]))


def remove_rows(params: Params, optims: Optims, remove: torch.Tensor) -> None:
    """Delete the Gaussians where the boolean mask `remove` is set."""
    keep = ~remove
    _edit_rows(params, optims, lambda n, p: p[keep], lambda n, v: v[keep])


def set_rows(params: Params, optims: Optims, idx: torch.Tensor, rows: dict[str, torch.Tensor]) -> None:
    """Overwrite the Gaussians at `idx` (new values, Adam moments reset to zero there)."""
    def pf(n, p):
        p = p.clone()
        if n in rows:
            p[idx] = rows[n].to(p)
        return p

    def sf(n, v):
        v = v.clone()
        v[idx] = 0
        return v

    _edit_rows(params, optims, pf, sf)


def reset_moments(optims: Optims, idx: torch.Tensor, names: tuple[str, ...] | None = None) -> None:
    """Zero the Adam moments of the rows `idx` (all parameters, or only `names`)."""
    for name, opt in optims.items():
        if names is not None and name not in names:
            continue
        for st in opt.state.values():
            for k, v in st.items():
                if torch.is_tensor(v) and v.dim() > 0:
                    v[idx] = 0


def _rows(params: Params, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {n: p.data[idx].clone() for n, p in params.items()}


# ---------------------------------------------------------------------------------------------- 3DGS ADC

@dataclass
class DefaultStrategy:
    """3DGS adaptive density control: clone small and split large Gaussians whose screen-space positional
    gradient is high (under-reconstructed regions), prune transparent or oversized ones, reset opacities
    periodically. Growth stops at `max_gaussians` (the candidates with the largest gradients win)."""

    max_gaussians: int = 150_000
    """budget: never grow beyond this many Gaussians"""
    grad_threshold: float = 2e-4
    """mean 2D positional gradient norm (in normalised device coordinates) above which a Gaussian densifies"""
    percent_dense: float = 0.01
    """Gaussians with largest scale <= percent_dense * scene extent are cloned, larger ones are split"""
    split_factor: float = 1.6
    """a split Gaussian's two children have scale / split_factor"""
    prune_opacity: float = 0.005
    """Gaussians more transparent than this are removed"""
    prune_scale: float = 0.1
    """after the first opacity reset, Gaussians larger than this fraction of the scene extent are removed"""
    prune_screen_px: float = 0.0
    """after the first opacity reset, Gaussians whose screen radius exceeded this many pixels are removed
    (0 = off)"""
    refine_start: int = 500
    """first step at which to densify"""
    refine_stop: int = 15_000
    """last step at which to densify"""
    refine_every: int = 100
    """densify every this many steps"""
    reset_every: int = 3000
    """reset opacities to <= 0.01 every this many steps (0 = never)"""

    def init_state(self, n: int, scene_extent: float) -> dict:
        return {"grad2d": torch.zeros(n), "count": torch.zeros(n), "radii": torch.zeros(n),
                "scene_extent": float(scene_extent)}

    def regularisation(self, params: Params) -> torch.Tensor | float:
        return 0.0

    def step_post_backward(self, params: Params, optims: Optims, state: dict, step: int, info: dict,
                           lr_means: float = 0.0) -> dict[str, int]:
        """Accumulate this step's gradients; densify / prune / reset on schedule. Returns counts of edits."""
        if step < self.refine_stop:
            self._accumulate(state, info)
        out = {}
        if self.refine_start <= step < self.refine_stop and step % self.refine_every == 0 and step > 0:
            out = self.refine(params, optims, state, step)
        if self.reset_every and step > 0 and step % self.reset_every == 0 and step < self.refine_stop:
            self.reset_opacity(params, optims)
        return out

    def _accumulate(self, state: dict, info: dict) -> None:
        g = info.get("means2d_grad")
        if g is None:
            return
        for k in ("grad2d", "count", "radii"):  # state follows the parameters' device (CUDA training)
            state[k] = state[k].to(g.device)
        radii = info["radii"].to(g.device)
        if radii.dim() == 2:  # per-axis radii (gsplat >= 1.5)
            radii = radii.max(-1).values
        vis = radii > 0
        g = g.detach().clone()
        g[:, 0] *= info["width"] / 2.0
        g[:, 1] *= info["height"] / 2.0
        state["grad2d"][vis] += g[vis].norm(dim=-1)
        state["count"][vis] += 1
        state["radii"][vis] = torch.maximum(state["radii"][vis], radii[vis].float())

    def refine(self, params: Params, optims: Optims, state: dict, step: int) -> dict[str, int]:
        """One densification round: clone, split (within the budget), then prune."""
        dev = params["means"].device
        avg = (state["grad2d"] / state["count"].clamp_min(1)).to(dev)
        high = avg > self.grad_threshold
        big = params["log_scales"].data.exp().max(-1).values > self.percent_dense * state["scene_extent"]
        room = max(self.max_gaussians - len(params["means"]), 0)
        cand = torch.nonzero(high).squeeze(1)
        if len(cand) > room:  # each clone or split adds exactly one Gaussian; keep the strongest gradients
            cand = cand[torch.topk(avg[cand], room).indices] if room > 0 else cand[:0]
        is_clone = torch.zeros_like(high)
        is_clone[cand] = True
        is_split = is_clone & big
        is_clone &= ~big
        n_clone, n_split = int(is_clone.sum()), int(is_split.sum())
        if n_clone:
            append_rows(params, optims, _rows(params, is_clone))
        if n_split:
            self._split(params, optims, torch.nonzero(is_split).squeeze(1))
        # prune
        n = len(params["means"])
        prune = torch.sigmoid(params["opacity_logits"].data) < self.prune_opacity
        if self.reset_every and step > self.reset_every:
            prune |= params["log_scales"].data.exp().max(-1).values > self.prune_scale * state["scene_extent"]
            if self.prune_screen_px > 0:
                r = torch.cat([state["radii"].to(dev), torch.zeros(n - len(state["radii"]), device=dev)])
                prune |= r > self.prune_screen_px
        n_prune = int(prune.sum())
        if n_prune >= n:  # never remove everything
            n_prune = 0
        if n_prune:
            remove_rows(params, optims, prune)
        n = len(params["means"])
        state.update(grad2d=torch.zeros(n, device=dev), count=torch.zeros(n, device=dev),
                     radii=torch.zeros(n, device=dev))
        return {"clone": n_clone, "split": n_split, "prune": n_prune}

    def _split(self, params: Params, optims: Optims, idx: torch.Tensor) -> None:
        """Replace each Gaussian at idx by two samples from it, with scales divided by split_factor."""
        scales = params["log_scales"].data[idx].exp()
        rot = quat_to_rotmat(params["quats"].data[idx])
        new_log_scales = torch.log(scales / self.split_factor)
        children = []
        for _ in range(2):
            r = _rows(params, idx)
            offset = torch.einsum("nij,nj->ni", rot, torch.randn_like(scales) * scales)
            r["means"] = r["means"] + offset
            r["log_scales"] = new_log_scales
            children.append(r)
        set_rows(params, optims, idx, children[0])
        append_rows(params, optims, children[1])

    def reset_opacity(self, params: Params, optims: Optims) -> None:
        """Clamp opacities to <= 2 x the prune threshold so that occluded floaters can be pruned."""
        cap = 2 * self.prune_opacity
        params["opacity_logits"].data.clamp_(max=math.log(cap / (1 - cap)))
        reset_moments(optims, slice(None), ("opacity_logits",))


# ---------------------------------------------------------------------------------------------- MCMC

_BINOM = [[math.comb(n, k) for k in range(52)] for n in range(52)]


def relocation_params(opacity: torch.Tensor, scales: torch.Tensor, copies: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Opacity and scale of each of `copies` Gaussians that together render like one of (opacity, scales).

    From Kheradmand et al. 2024, eq. 9: o' = 1 - (1 - o)^(1/n) and the covariance rescaled so that the
    sum of the n overlapping copies keeps the original's opacity profile at the centre.
    """
    n = copies.clamp(1, 51).long()
    o_new = 1 - (1 - opacity.clamp(1e-6, 1 - 1e-6)) ** (1.0 / n.float())
    binom = torch.tensor(_BINOM, dtype=opacity.dtype, device=opacity.device)
    denom = torch.zeros_like(opacity)
    for i in range(1, int(n.max()) + 1):
        active = n >= i
        k = torch.arange(i, dtype=opacity.dtype, device=opacity.device)
        terms = binom[i - 1, :i] * (-1.0) ** k * o_new[:, None] ** (k + 1) / torch.sqrt(k + 1)
        denom = denom + torch.where(active, terms.sum(-1), torch.zeros_like(denom))
    s_new = scales * (opacity / denom.clamp_min(1e-12))[:, None]
    return o_new, s_new


@dataclass
class MCMCStrategy:
    """3DGS as MCMC: dead (near-transparent) Gaussians are moved onto live ones sampled by opacity, new ones
    are added by the same sampling (5% per round) up to the budget, and all positions get noise that is
    large for transparent Gaussians. Adds opacity and scale regularisers to the loss."""

    max_gaussians: int = 150_000
    """budget (the set grows to this size and stays there)"""
    refine_start: int = 500
    """first relocation step"""
    refine_stop: int = 25_000
    """no relocation / growth after this step"""
    refine_every: int = 100
    """relocate and grow every this many steps"""
    min_opacity: float = 0.005
    """Gaussians more transparent than this are dead and get relocated"""
    grow_rate: float = 0.05
    """fraction by which the set grows per round until the budget"""
    noise_lr: float = 5e5
    """position noise scale, times the current means learning rate"""
    opacity_reg: float = 0.01
    """weight of mean opacity in the loss (frees Gaussians for relocation)"""
    scale_reg: float = 0.01
    """weight of mean scale in the loss"""

    def init_state(self, n: int, scene_extent: float) -> dict:
        return {"scene_extent": float(scene_extent)}

    def regularisation(self, params: Params) -> torch.Tensor | float:
        return (self.opacity_reg * torch.sigmoid(params["opacity_logits"]).mean()
                + self.scale_reg * params["log_scales"].exp().mean())

    def step_post_backward(self, params: Params, optims: Optims, state: dict, step: int, info: dict,
                           lr_means: float = 0.0) -> dict[str, int]:
        out = {}
        if self.refine_start <= step < self.refine_stop and step % self.refine_every == 0 and step > 0:
            out["relocate"] = self.relocate(params, optims)
            out["add"] = self.grow(params, optims)
        self.inject_noise(params, lr_means)
        return out

    def _sample(self, params: Params, n: int, alive: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(params["opacity_logits"].data) * alive
        return torch.multinomial(w, n, replacement=True)

    def _copy_into(self, params: Params, optims: Optims, src: torch.Tensor, dst: torch.Tensor | None) -> None:
        """Share each sampled source among itself and its copies; write copies at dst (None = append)."""
        uniq, counts = torch.unique(src, return_counts=True)
        total = torch.zeros(len(params["means"]), dtype=torch.long, device=src.device)
        total[uniq] = counts + 1
        o = torch.sigmoid(params["opacity_logits"].data[uniq])
        s = params["log_scales"].data[uniq].exp()
        o_new, s_new = relocation_params(o, s, total[uniq])
        o_new = o_new.clamp(self.min_opacity, 1 - 1e-6)
        logits = torch.log(o_new / (1 - o_new))
        params["opacity_logits"].data[uniq] = logits
        params["log_scales"].data[uniq] = torch.log(s_new)
        reset_moments(optims, uniq)
        rows = _rows(params, src)
        if dst is None:
            append_rows(params, optims, rows)
        else:
            set_rows(params, optims, dst, rows)

    def relocate(self, params: Params, optims: Optims) -> int:
        """Move dead Gaussians onto live ones; returns how many moved."""
        op = torch.sigmoid(params["opacity_logits"].data)
        dead = (op <= self.min_opacity) | ~torch.isfinite(params["means"].data).all(-1)
        n_dead = int(dead.sum())
        if n_dead == 0 or n_dead == len(op):
            return 0
        src = self._sample(params, n_dead, ~dead)
        self._copy_into(params, optims, src, torch.nonzero(dead).squeeze(1))
        return n_dead

    def grow(self, params: Params, optims: Optims) -> int:
        """Add up to grow_rate x N Gaussians (not beyond the budget); returns how many were added."""
        n = len(params["means"])
        n_new = max(0, min(self.max_gaussians, int(n * (1 + self.grow_rate))) - n)
        if n_new == 0:
            return 0
        alive = torch.sigmoid(params["opacity_logits"].data) > self.min_opacity
        if not alive.any():
            return 0
        self._copy_into(params, optims, self._sample(params, n_new, alive), None)
        return n_new

    @torch.no_grad()
    def inject_noise(self, params: Params, lr_means: float) -> None:
        """Perturb positions along each Gaussian's covariance, strongly for nearly transparent ones."""
        if lr_means <= 0 or self.noise_lr <= 0:
            return
        op = torch.sigmoid(params["opacity_logits"].data)
        gate = torch.sigmoid(100.0 * ((1 - op) - (1 - self.min_opacity)))
        rot = quat_to_rotmat(params["quats"].data)
        s2 = params["log_scales"].data.exp() ** 2
        cov = rot @ (s2[:, :, None] * rot.transpose(1, 2))
        noise = torch.randn_like(params["means"].data) * gate[:, None] * self.noise_lr * lr_means
        params["means"].data += torch.einsum("nij,nj->ni", cov, noise)
