"""Cosmos-Transfer 2.5 restyling through diffusers' `Cosmos2_5_TransferPipeline`, from local weights only.

The ControlNet checkpoint that is loaded decides the control type (depth, seg, edge or blur); `control_video`
turns Twin's maps into that control video in the form Cosmos was trained on (inverse depth near = white;
coloured segments; white edges on black; the blurred frames). The pipeline generates the episode clip by clip
(`frames_per_clip`), each clip conditioned on the last `overlap` generated frames of the previous one, and the
result is resized back to the render's size. The style becomes the text prompt (`style_prompt`).

Runs on CUDA when present (bfloat16), else on the CPU (float32: only for tiny test models).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from policies.restyle.families import Style
from policies.restyle.geometry import camera_rays, facing_camera, normals_from_points, table_mask, world_points
from policies.restyle.shading import gaussian_blur
from twin_kit import InputError, opt

CONTROLS = ("depth", "seg", "edge", "blur")
SEG_COLOURS = torch.tensor([  # none, scene (background), robot, object, distractor, table
    [0.0, 0.0, 0.0], [0.47, 0.47, 0.78], [0.96, 0.55, 0.10], [0.12, 0.80, 0.25], [0.85, 0.15, 0.70],
    [0.85, 0.80, 0.45]])


@dataclass
class CosmosConfig:
    """Cosmos-Transfer 2.5 restyling: where the weights are and how to run the pipeline."""

    cosmos_weights: str | None = opt(None, "local folder of a diffusers-format Cosmos-Transfer2.5 pipeline "
                                     "(model_index.json and its components); never downloaded")
    cosmos_controlnet: str | None = opt(None, "local folder of the ControlNet to condition on (depth, seg, edge "
                                        "or blur); None = the pipeline folder's own controlnet")
    control: str = opt("auto", "Twin map fed to the ControlNet; auto = the control type named in the ControlNet "
                       "folder's path", choices=("auto", *CONTROLS))
    height: int = opt(704, "generation height in pixels; the width follows the frames' aspect", low=16,
                      multiple_of=16)
    frames_per_clip: int = opt(93, "frames generated together (the pipeline's chunk)", low=5)
    overlap: int = opt(1, "generated frames of the previous clip that condition the next", low=0)
    steps: int = opt(36, "denoising steps per clip", low=1)
    guidance: float = opt(3.0, "classifier-free guidance scale (1 = off, half the work)", low=1.0)
    control_scale: float = opt(1.0, "strength of the ControlNet's conditioning", low=0.0)
    seed: int | None = opt(None, "noise seed; None = the style's seed")
    device: str = opt("auto", "auto (cuda when present), cuda or cpu", choices=("auto", "cuda", "cpu"))


# ------------------------------------------------------------------------ diffusers without torchvision


class _InterpolationMode:
    NEAREST = "nearest"


def _nearest_resize(img: torch.Tensor, size, interpolation: str = "nearest", **_) -> torch.Tensor:
    """torchvision.transforms.functional.resize for a tensor in nearest mode: F.interpolate(mode='nearest'),
    which is what torchvision itself runs for tensors (computed in float32, returned in the input's dtype)."""
    if interpolation != "nearest":
        raise NotImplementedError(f"resize mode {interpolation!r} (only nearest is provided without torchvision)")
    return F.interpolate(img.float(), size=[int(s) for s in size], mode="nearest").to(img.dtype)


_TORCH_TRANSFORMS = SimpleNamespace(functional=SimpleNamespace(resize=_nearest_resize),
                                    InterpolationMode=_InterpolationMode)


def _without_torchvision() -> None:
    """Let diffusers' Cosmos ControlNet and transformer run where torchvision is not installed.

    Both modules import torchvision only `if is_torchvision_available()`, yet call
    `transforms.functional.resize(padding_mask, ..., NEAREST)` unconditionally in forward (the ControlNet always,
    the transformer when `concat_padding_mask`), so without torchvision they fail with NameError. PyPI's
    torchvision is a CUDA build that does not import beside the CPU torch, so on the CPU we give those two
    modules that one function, not a torchvision module: nothing else sees it, and a real torchvision is used
    whenever it is installed.
    """
    from diffusers.utils import is_torchvision_available

    if is_torchvision_available():
        return
    import diffusers.models.controlnets.controlnet_cosmos as controlnet
    import diffusers.models.transformers.transformer_cosmos as transformer

    for mod in (controlnet, transformer):
        if not hasattr(mod, "transforms"):
            mod.transforms = _TORCH_TRANSFORMS


# ------------------------------------------------------------------------ loading


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device here")
    return torch.device(name)


def _guardrail():
    """Cosmos's own safety checker (its licence requires it), from the cosmos_guardrail package."""
    try:
        from cosmos_guardrail import CosmosSafetyChecker
    except ImportError:
        raise InputError("Cosmos-Transfer needs its safety checker: pip install cosmos_guardrail (its weights "
                         "must already be in the local Hugging Face cache; Twin downloads nothing)") from None
    try:
        return CosmosSafetyChecker()
    except Exception as e:  # noqa: BLE001 - any failure to build it is the user's setup, said in one line
        raise InputError(f"cosmos_guardrail could not load its weights locally: {str(e).splitlines()[0]}") from None


def control_kind(cfg: CosmosConfig) -> str:
    """The control type: cfg.control, or the single one of depth/seg/edge/blur named in the ControlNet's path."""
    if cfg.control != "auto":
        return cfg.control
    where = str(cfg.cosmos_controlnet or cfg.cosmos_weights or "").lower()
    named = [c for c in CONTROLS if c in Path(where).as_posix().replace("_", "/").replace("-", "/").split("/")]
    if len(named) != 1:
        raise InputError(f"cannot tell the ControlNet's control type from {where!r}: set --control "
                         f"({', '.join(CONTROLS)})")
    return named[0]


def load_cosmos(cfg: CosmosConfig, safety_checker=None, text_encoder: bool = True):
    """The pipeline from local folders, on CUDA when present (bfloat16) or the CPU (float32).

    safety_checker: None = cosmos_guardrail's CosmosSafetyChecker; otherwise an object with the same methods.
    text_encoder: False leaves out the text encoder and tokenizer (Qwen2.5-VL 7B): enough when prompts are
    given as embeddings.
    """
    if not cfg.cosmos_weights:
        raise InputError("--cosmos-weights is required (a local Cosmos-Transfer2.5 diffusers folder)")
    root = Path(cfg.cosmos_weights).expanduser()
    if not (root / "model_index.json").is_file():
        raise InputError(f"--cosmos-weights {root}: not a diffusers pipeline folder (no model_index.json); Twin "
                         "never downloads weights")
    cn_dir = None if cfg.cosmos_controlnet is None else Path(cfg.cosmos_controlnet).expanduser()
    if cn_dir is not None and not (cn_dir / "config.json").is_file():
        raise InputError(f"--cosmos-controlnet {cn_dir}: not a diffusers model folder (no config.json)")
    control_kind(cfg)
    device = _device(cfg.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    _without_torchvision()
    from diffusers import Cosmos2_5_TransferPipeline, CosmosControlNetModel

    try:
        kw = {} if text_encoder else {"text_encoder": None, "tokenizer": None}
        if cn_dir is not None:
            kw["controlnet"] = CosmosControlNetModel.from_pretrained(cn_dir, local_files_only=True, torch_dtype=dtype)
        checker = _guardrail() if safety_checker is None else safety_checker
        pipe = Cosmos2_5_TransferPipeline.from_pretrained(root, local_files_only=True, torch_dtype=dtype,
                                                          safety_checker=checker, **kw)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"--cosmos-weights {root}: cannot load the pipeline: {str(e).splitlines()[0]}") from None
    return pipe.to(device)


# ------------------------------------------------------------------------ controls and prompt


def _labels(maps: dict) -> torch.Tensor:
    """(T, H, W) segmentation with the table split from the rest of the scene (label 5) when geometry allows."""
    seg = torch.as_tensor(maps["seg"])
    if maps.get("support_height") is None or maps.get("K") is None:
        return seg
    depth = torch.as_tensor(maps["depth"]).float()
    T, H, W = seg.shape
    w2c = torch.as_tensor(maps.get("world_to_cam", torch.eye(4)), dtype=torch.float32)
    w2c = w2c[None].expand(T, 4, 4) if w2c.dim() == 2 else w2c
    centres, dirs = camera_rays(torch.as_tensor(maps["K"], dtype=torch.float32), w2c, H, W)
    P = world_points(depth, centres, dirs)
    n = maps.get("normal")
    n = normals_from_points(P) if n is None else torch.as_tensor(n).float()
    table = table_mask(P, facing_camera(n, P, centres), seg == 1, float(maps["support_height"]))
    return torch.where(table, 5, seg)


def _edges(depth: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """(T, H, W) bool: segment boundaries and depth jumps over 5% (as sim's control_maps marks them)."""
    d = torch.where(torch.isfinite(depth[..., 0]), depth[..., 0], torch.zeros(()))
    e = torch.zeros_like(seg, dtype=torch.bool)
    e[:, 1:] |= (seg[:, 1:] != seg[:, :-1]) | ((d[:, 1:] - d[:, :-1]).abs() > 0.05 * d[:, 1:].clamp_min(1e-3))
    e[:, :, 1:] |= (seg[:, :, 1:] != seg[:, :, :-1]) | ((d[:, :, 1:] - d[:, :, :-1]).abs() >
                                                        0.05 * d[:, :, 1:].clamp_min(1e-3))
    return e


def control_video(rgb: torch.Tensor, maps: dict, kind: str) -> torch.Tensor:
    """(T, H, W, 3) float [0, 1] control frames of the episode for a ControlNet of type `kind`.

    depth: inverse depth scaled over the whole episode (near white, far and empty black), as Cosmos's depth
    estimator gives it; seg: a colour per segment (table, rest of scene, robot, objects, distractors) on black;
    edge: Twin's geometric edges (maps['edges'], else derived from seg and depth) white on black; blur: the
    frames blurred, Cosmos's 'vis' control.
    """
    if kind not in CONTROLS:
        raise InputError(f"control must be one of {', '.join(CONTROLS)}, got {kind!r}")
    if kind == "blur":
        return gaussian_blur(rgb.float(), max(rgb.shape[1:3]) / 64).clamp(0, 1)
    depth = torch.as_tensor(maps["depth"]).float()
    if kind == "depth":
        inv = torch.where(torch.isfinite(depth) & (depth > 0), 1.0 / depth, torch.zeros(()))
        hit = inv > 0
        if not hit.any():
            return torch.zeros(*depth.shape[:3], 3)
        lo, hi = inv[hit].min(), inv[hit].max()
        v = torch.where(hit, (inv - lo) / (hi - lo).clamp_min(1e-6) * 0.9 + 0.1, torch.zeros(()))
        return v.expand(*v.shape[:3], 3).contiguous()
    if kind == "seg":
        return SEG_COLOURS[_labels(maps).clamp(0, len(SEG_COLOURS) - 1)]
    edges = maps.get("edges")
    edges = _edges(depth, torch.as_tensor(maps["seg"])) if edges is None else torch.as_tensor(edges).bool()
    return edges.float()[..., None].expand(*edges.shape, 3).contiguous()


_KINDS = {"wood": "wooden", "noise": "mottled", "checker": "checkered", "marble": "marble"}


def style_prompt(style: Style) -> str:
    """A text prompt for Cosmos describing the style (vanilla: a plain, realistic scene)."""
    parts = ["A realistic video of a robot arm working at a table in a room, static camera."]
    if (t := style.table_texture) is not None:
        parts.append(f"The table top is {_KINDS[t.kind]}, in {t.palette.replace('_', ' ')} colours.")
    if (b := style.background) is not None:
        mood = "washed-out, almost grey" if b.saturation < 0.5 else "vivid" if b.saturation > 1.5 else "natural"
        tone = "dark" if b.exposure_ev < -0.5 else "bright" if b.exposure_ev > 0.5 else "evenly lit"
        shift = f", its colours shifted {abs(b.hue_deg):.0f} degrees in hue" if abs(b.hue_deg) > 45 else ""
        parts.append(f"The room behind is {tone} with {mood} colours{shift}.")
    if (li := style.light_intensity) is not None:
        level = "dim" if li.gain < 0.8 else "strong" if li.gain > 1.3 else "soft"
        angle = "low, raking light from the side" if li.elevation_deg < 35 else "light from above"
        parts.append(f"The scene has {level} {angle}.")
    if (lc := style.light_colour) is not None:
        k = lc.kelvin
        tint = "warm orange" if k < 3200 else "warm" if k < 4800 else "neutral white" if k < 7000 else "cold blue"
        parts.append(f"The light is {tint} ({k:.0f} K).")
    if (r := style.robot_texture) is not None:
        parts.append(f"The robot arm is {r.palette.replace('_', ' ')}.")
    if (o := style.object_texture) is not None:
        parts.append(f"The block on the table is {o.palette.replace('_', ' ')}; each other object keeps a colour "
                     "of its own.")
    if (d := style.distractors) is not None:
        parts.append(f"{d.count} small boxes and cylinders stand on the table.")
    if (c := style.camera) is not None:
        look = [w for w, on in (("grainy", c.noise_std > 0.025), ("soft-focus", c.blur_px > 1.0),
                                ("vignetted", c.vignette > 0.25)) if on]
        if look:
            parts.append(f"The footage is {' and '.join(look)}.")
    return " ".join(parts)


# ------------------------------------------------------------------------ restyling


def restyle_cosmos(pipe, rgb: torch.Tensor, maps: dict, style: Style | None = None,
                   cfg: CosmosConfig | None = None, prompt_embeds: torch.Tensor | None = None,
                   negative_prompt_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """(T, H, W, 3) float32 [0, 1] frames generated by the pipeline from the episode's control maps.

    The prompt is `style_prompt(style)` unless `prompt_embeds` (and, with guidance, `negative_prompt_embeds`)
    are given, which skips the text encoder. Deterministic given the seed (cfg.seed, else the style's).
    """
    style = style or Style()
    cfg = cfg or CosmosConfig()
    if rgb.dim() != 4 or rgb.shape[-1] != 3:
        raise InputError(f"restyle_cosmos: rgb must be (T, H, W, 3), got {tuple(rgb.shape)}")
    T, H, W, _ = rgb.shape
    chunk = min(cfg.frames_per_clip, max(T, 5))  # a short episode is one clip of its own length
    if cfg.overlap >= chunk:
        raise InputError(f"overlap ({cfg.overlap}) must be smaller than the clip ({chunk} frames)")
    if (prompt_embeds is not None and negative_prompt_embeds is None and cfg.guidance > 1
            and getattr(pipe, "text_encoder", None) is None):
        raise InputError("guidance > 1 without a text encoder needs negative_prompt_embeds too")
    _without_torchvision()
    ctrl = control_video(rgb, maps, control_kind(cfg))
    h = cfg.height
    w = max(16, int(round(h * W / H / 16)) * 16)
    mode = "bilinear" if control_kind(cfg) in ("depth", "blur") else "nearest"
    video = F.interpolate(ctrl.permute(0, 3, 1, 2), size=(h, w), mode=mode)[None].clamp(0, 1)
    device = pipe.device
    seed = style.seed if cfg.seed is None else cfg.seed
    kw = dict(controls=video, controls_conditioning_scale=cfg.control_scale, height=h, width=w, num_frames=T,
              num_frames_per_chunk=chunk, num_ar_conditional_frames=cfg.overlap,
              num_inference_steps=cfg.steps, guidance_scale=cfg.guidance, output_type="pt",
              generator=torch.Generator(device=device).manual_seed(seed))
    if prompt_embeds is None:
        kw["prompt"] = style_prompt(style)
    else:
        kw["prompt_embeds"] = prompt_embeds.to(device)
        if negative_prompt_embeds is not None:
            kw["negative_prompt_embeds"] = negative_prompt_embeds.to(device)
    frames = pipe(**kw).frames[0]                                  # (T, 3, h, w) in [0, 1]
    out = F.interpolate(frames.float().cpu(), size=(H, W), mode="bilinear", antialias=True)
    return out.permute(0, 2, 3, 1).clamp(0, 1).contiguous()

