"""Light and colour: blackbody light colour, Lambert relighting from normals, colour grades, camera effects.

The original frame stands in for the albedo (it already holds the captured room's light); relighting
multiplies it by a Lambert factor of the new key light, normalised so a table lit from 60 degrees by the
reference light keeps its brightness.
"""
from __future__ import annotations

import math

import torch

from policies.restyle.families import LightIntensity

# The light the original render is taken to be lit by (for distractors and shadows when no light family is set).
REFERENCE_LIGHT = LightIntensity(gain=1.0, ambient=0.45, elevation_deg=60.0, azimuth_deg=135.0)
LUMA = torch.tensor([0.2126, 0.7152, 0.0722])
_XYZ_TO_RGB = torch.tensor([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]],
                           dtype=torch.float64)
_REF = REFERENCE_LIGHT.ambient + (1 - REFERENCE_LIGHT.ambient) * math.sin(math.radians(
    REFERENCE_LIGHT.elevation_deg))
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def planck_xy(kelvin: float) -> tuple[float, float]:
    """CIE 1931 chromaticity of a blackbody (Kim et al.'s cubic fit of the Planckian locus, 1667-25000 K)."""
    T = min(max(float(kelvin), 1667.0), 25000.0)
    if T <= 4000:
        x = -0.2661239e9 / T**3 - 0.2343589e6 / T**2 + 0.8776956e3 / T + 0.179910
    else:
        x = -3.0258469e9 / T**3 + 2.1070379e6 / T**2 + 0.2226347e3 / T + 0.240390
    if T <= 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif T <= 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    return x, y


def _xy_rgb(x: float, y: float) -> torch.Tensor:
    xyz = torch.tensor([x / y, 1.0, (1 - x - y) / y], dtype=torch.float64)
    return _XYZ_TO_RGB @ xyz


def light_rgb(kelvin: float, tint: float = 0.0) -> torch.Tensor:
    """(3,) linear RGB multiplier of a light: 6500 K is white, unit luminance; tint > 0 takes green out."""
    rgb = (_xy_rgb(*planck_xy(kelvin)) / _xy_rgb(*planck_xy(6500.0))).clamp_min(0.0).float()
    rgb = rgb * torch.tensor([1.0, 1.0 - tint, 1.0])
    return rgb / (rgb @ LUMA)


def light_direction(light: LightIntensity) -> torch.Tensor:
    """(3,) unit vector from a surface towards the key light (world, +Z up)."""
    e, a = math.radians(light.elevation_deg), math.radians(light.azimuth_deg)
    return torch.tensor([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


def lambert(cos: torch.Tensor, light: LightIntensity, lit: torch.Tensor | None = None) -> torch.Tensor:
    """(...) Lambert factor of the light at surfaces with cos = n . light direction (negative: facing away);
    `lit` in [0, 1] scales the direct term (0 = in shadow). Normalised so the reference light on an upward
    surface gives 1."""
    c = cos.clamp_min(0.0)
    if lit is not None:
        c = c * lit
    a = light.ambient
    return (a + (1 - a) * c) * (light.gain / _REF)


def up_cos(light: LightIntensity) -> float:
    """cos of the light on an upward surface (used where the normal is unknown)."""
    return math.sin(math.radians(light.elevation_deg))


def grade_matrix(hue_deg: float, saturation: float) -> torch.Tensor:
    """(3, 3) RGB -> RGB matrix rotating hue and scaling chroma in YIQ (luma kept)."""
    h = math.radians(hue_deg)
    c, s = math.cos(h) * saturation, math.sin(h) * saturation
    rot = torch.tensor([[1.0, 0, 0], [0, c, -s], [0, s, c]])
    return torch.linalg.inv(_RGB_TO_YIQ) @ rot @ _RGB_TO_YIQ


def grade_affine(hue_deg: float, saturation: float, exposure_ev: float, contrast: float,
                 pivot: float = 0.45) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (3, 3), b (3,)) of the colour grade rgb @ A + b: hue/saturation, exposure in stops, contrast about
    `pivot`."""
    A = grade_matrix(hue_deg, saturation).T * (2.0**exposure_ev * contrast)
    return A, torch.full((3,), pivot * (1 - contrast))


def shoulder_(x: torch.Tensor, knee: float = 0.8) -> torch.Tensor:
    """In place: values above `knee` rolled off smoothly towards 1 (a camera's tone curve), so a brightened
    grade keeps its highlights rather than clipping them white. Identity below the knee."""
    over = (x - knee).clamp_min_(0.0)
    return x.sub_(over).add_(over.div_(over.mul(1 / (1 - knee)).add_(1)))  # knee + o / (1 + o / (1 - knee))


def grade(rgb: torch.Tensor, hue_deg: float, saturation: float, exposure_ev: float, contrast: float) -> torch.Tensor:
    """(..., 3) colour-graded rgb (see `grade_affine`), highlights rolled off (`shoulder_`)."""
    A, b = grade_affine(hue_deg, saturation, exposure_ev, contrast)
    return shoulder_(torch.addmm(b, rgb.reshape(-1, 3), A)).view(rgb.shape)


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """(T, H, W, C) separable Gaussian blur (truncated at 2.5 sigma), edges replicated; shifted in-place sums,
    which beat conv2d by an order of magnitude on few-channel images."""
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2)
    k = (k / k.sum()).tolist()
    H, W = img.shape[1:3]
    p = torch.cat([img[:, :, :1].expand(-1, -1, r, -1), img, img[:, :, -1:].expand(-1, -1, r, -1)], 2)
    acc = p[:, :, 0:W] * k[0]
    for i in range(1, 2 * r + 1):
        acc.add_(p[:, :, i:i + W], alpha=k[i])
    p = torch.cat([acc[:, :1].expand(-1, r, -1, -1), acc, acc[:, -1:].expand(-1, r, -1, -1)], 1)
    out = p[:, 0:H] * k[0]
    for i in range(1, 2 * r + 1):
        out.add_(p[:, i:i + H], alpha=k[i])
    return out


def vignette(height: int, width: int, strength: float) -> torch.Tensor:
    """(H, W) brightness factor: 1 at the centre, 1 - strength at the corners (quadratic in the radius)."""
    v = torch.linspace(-1, 1, height)[:, None] ** 2 + torch.linspace(-1, 1, width)[None, :] ** 2
    return 1 - strength * (v / 2)


def noise_bank(height: int, width: int, seed: int) -> torch.Tensor:
    """(2H, 2W, 3) Gaussian noise from which each frame takes a crop at its own offset (see `frame_noise`):
    independent-looking noise per frame for the cost of one addition."""
    g = torch.Generator().manual_seed(seed % 2**63)
    return torch.randn(2 * height, 2 * width, 3, generator=g)


def frame_noise(bank: torch.Tensor, seed: int, frame: int) -> torch.Tensor:
    """(H, W, 3) view of the bank at frame `frame`'s offset (an integer hash of seed and frame)."""
    H, W = bank.shape[0] // 2, bank.shape[1] // 2
    h = (seed * 0x9E3779B1 + (frame + 1) * 0x85EBCA6B) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
    oy, ox = h % H, (h >> 16) % W
    return bank[oy:oy + H, ox:ox + W]
