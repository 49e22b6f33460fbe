"""3D Gaussians as tensors, and the standard 3DGS PLY layout that other splat tools read and write."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from twin_kit import InputError

SH_C0 = 0.28209479177387814


@dataclass
class Gaussians:
    """Raw (pre-activation) parameters, as 3DGS stores them.

    means (N,3) world; quats (N,4) wxyz, unnormalised; log_scales (N,3); opacity_logits (N,);
    sh_dc (N,3) degree-0 coefficients; sh_rest (N,K-1,3) higher bands, K = (degree+1)^2.
    """

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacity_logits: torch.Tensor
    sh_dc: torch.Tensor
    sh_rest: torch.Tensor

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(np.sqrt(self.sh_rest.shape[1] + 1))) - 1

    @property
    def sh(self) -> torch.Tensor:
        """All SH coefficients (N, K, 3)."""
        return torch.cat([self.sh_dc[:, None, :], self.sh_rest], dim=1)

    @property
    def scales(self) -> torch.Tensor:
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.opacity_logits)

    def to(self, device) -> Gaussians:
        return Gaussians(*(t.to(device) for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.means, self.quats, self.log_scales, self.opacity_logits, self.sh_dc, self.sh_rest)

    def subset(self, idx) -> Gaussians:
        return Gaussians(*(t[idx] for t in self.tensors()))


def _ply_names(n_rest: int) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * n_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def write_splats_ply(path: str | Path, g: Gaussians) -> None:
    """Write the standard 3DGS binary PLY (f_rest stored channel-major, as the reference implementation does)."""
    from plyfile import PlyData, PlyElement

    n = len(g)
    k1 = g.sh_rest.shape[1]
    cols = [
        g.means, torch.zeros_like(g.means), g.sh_dc,
        g.sh_rest.transpose(1, 2).reshape(n, 3 * k1),  # (N, 3, K-1) flattened: all R, then G, then B
        g.opacity_logits[:, None], g.log_scales, g.quats,
    ]
    data = torch.cat([c.detach().float().cpu() for c in cols], dim=1).numpy()
    if not np.isfinite(data).all():
        raise ValueError("refusing to write splats with NaN or infinite parameters")
    names = _ply_names(k1)
    arr = np.empty(n, dtype=[(nm, "f4") for nm in names])
    for i, nm in enumerate(names):
        arr[nm] = data[:, i]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    PlyData([PlyElement.describe(arr, "vertex")], text=False).write(str(tmp))
    tmp.replace(path)


def read_splats_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS PLY written by Twin or by other tools (INRIA 3DGS, gsplat, nerfstudio exports)."""
    from plyfile import PlyData

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such splat file")
    try:
        ply = PlyData.read(str(path))
        v = ply["vertex"].data
    except Exception as e:  # plyfile raises many types on damaged files
        raise InputError(f"{path}: damaged or unreadable PLY ({type(e).__name__}: {e})") from None
    names = set(v.dtype.names or ())
    need = {"x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"}
    if not need <= names:
        raise InputError(f"{path}: not a 3D Gaussian splat PLY (missing {', '.join(sorted(need - names)[:4])})")
    rest = sorted((nm for nm in names if nm.startswith("f_rest_")), key=lambda s: int(s.split("_")[-1]))
    if len(rest) % 3:
        raise InputError(f"{path}: f_rest_* count {len(rest)} is not a multiple of 3")
    k1 = len(rest) // 3
    if int(round(np.sqrt(k1 + 1))) ** 2 != k1 + 1:
        raise InputError(f"{path}: {len(rest)} f_rest_* properties do not form a spherical-harmonic degree")

    def col(*ns):
        return torch.from_numpy(np.stack([np.asarray(v[nm], dtype=np.float32) for nm in ns], axis=1))

    n = len(v)
    sh_rest = col(*rest).reshape(n, 3, k1).transpose(1, 2).contiguous() if k1 else torch.zeros(n, 0, 3)
    g = Gaussians(means=col("x", "y", "z"), quats=col("rot_0", "rot_1", "rot_2", "rot_3"),
                  log_scales=col("scale_0", "scale_1", "scale_2"), opacity_logits=col("opacity")[:, 0],
                  sh_dc=col("f_dc_0", "f_dc_1", "f_dc_2"), sh_rest=sh_rest)
    if not all(torch.isfinite(t).all() for t in g.tensors()):
        raise InputError(f"{path}: splat file holds NaN or infinite values")
    return g
