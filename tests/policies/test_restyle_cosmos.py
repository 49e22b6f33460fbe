"""Cosmos-Transfer 2.5 restyling: the whole wiring through diffusers' real pipeline classes on the CPU.

The pipeline is built from diffusers' own classes (CosmosTransformer3DModel, CosmosControlNetModel,
AutoencoderKLWan, UniPCMultistepScheduler) with tiny random weights, so frames and control maps go in and
frames come out through the real code paths (control video, VAE encode, ControlNet + transformer denoising,
clip-by-clip generation conditioned on the previous clip, VAE decode, resize back). Prompt embeddings are
passed directly, which skips the 7B text encoder. Cosmos's safety checker (cosmos_guardrail, multi-GB) is
replaced by a pass-through object, as diffusers' own tests do.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from support.restyle_scene import TABLE_Z, episode, intrinsics, look_at
from support.tiny_cosmos import PassThroughChecker, prompt_embeddings, tiny_pipeline

from policies.restyle.cosmos import (
    CosmosConfig,
    _nearest_resize,
    control_kind,
    control_video,
    load_cosmos,
    restyle_cosmos,
    style_prompt,
)
from policies.restyle.families import sample_style
from twin_kit import InputError, torch_threads


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's tensors are small: torch's thread pool costs more than it saves (10x on a busy CPU)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def pipe():
    """A tiny randomly initialised Cosmos2_5_TransferPipeline (built offline in a fraction of a second)."""
    from policies.restyle.cosmos import _without_torchvision

    _without_torchvision()
    return tiny_pipeline(0)


@pytest.fixture(scope="module")
def clip():
    """Nine 40 x 48 frames of a camera sliding past the analytic table scene."""
    K = intrinsics(48, 40, 48.0)
    poses = [look_at(np.array([1.2, -0.9 + 0.02 * i, 1.5]), np.array([0.0, 0.0, TABLE_Z])) for i in range(9)]
    return episode(poses, K, 48, 40)


_embeds = prompt_embeddings


def test_tiny_pipeline_end_to_end_clip_by_clip(pipe, clip):
    """9 frames in clips of 5 overlapping by 1 (two clips, the second conditioned on the first): right shape,
    dtype and range, deterministic for a seed, different for another seed and for another control."""
    rgb, maps = clip
    pos, neg = _embeds()
    cfg = CosmosConfig(control="depth", height=32, frames_per_clip=5, overlap=1, steps=2, guidance=1.0, seed=3)
    a = restyle_cosmos(pipe, rgb, maps, cfg=cfg, prompt_embeds=pos, negative_prompt_embeds=neg)
    assert a.shape == rgb.shape and a.dtype == torch.float32
    assert torch.isfinite(a).all() and a.min() >= 0 and a.max() <= 1 and a.std() > 0.01
    b = restyle_cosmos(pipe, rgb, maps, cfg=cfg, prompt_embeds=pos, negative_prompt_embeds=neg)
    assert torch.equal(a, b)
    c = restyle_cosmos(pipe, rgb, maps, cfg=CosmosConfig(**{**cfg.__dict__, "seed": 4}), prompt_embeds=pos)
    assert (a - c).abs().mean() > 1e-3
    d = restyle_cosmos(pipe, rgb, maps, cfg=CosmosConfig(**{**cfg.__dict__, "control": "seg"}), prompt_embeds=pos)
    assert (a - d).abs().mean() > 1e-4  # the control video reaches the generation


def test_guidance_and_style_seed(pipe, clip):
    """With classifier-free guidance (negative embeddings used) and no seed in the config, the style's seed
    decides the noise."""
    rgb, maps = clip
    rgb, maps = rgb[:5], {k: (v[:5] if k in ("depth", "seg", "normal", "world_to_cam") else v) for k, v in maps.items()}
    pos, neg = _embeds(1)
    cfg = CosmosConfig(control="edge", height=32, frames_per_clip=5, steps=1, guidance=3.0)
    s1, s2 = sample_style(1), sample_style(2)
    a = restyle_cosmos(pipe, rgb, maps, s1, cfg, pos, neg)
    assert torch.equal(a, restyle_cosmos(pipe, rgb, maps, s1, cfg, pos, neg))
    assert not torch.equal(a, restyle_cosmos(pipe, rgb, maps, s2, cfg, pos, neg))


def test_control_videos_follow_cosmos_conventions(clip):
    rgb, maps = clip
    depth = control_video(rgb, maps, "depth")
    assert depth.shape == rgb.shape and depth.min() >= 0 and depth.max() <= 1
    d = maps["depth"][..., 0]
    hit = torch.isfinite(d)
    near, far = d[hit].argmin(), d[hit].argmax()
    assert depth[..., 0][hit][near] > depth[..., 0][hit][far]           # near is brighter
    seg = control_video(rgb, maps, "seg")
    cls = maps["seg"]
    for k in (2, 3):  # robot and object pixels carry their own colour
        cols = seg[cls == k].unique(dim=0)
        assert len(cols) == 1
    table_col = seg[(cls == 1)].unique(dim=0)
    assert len(table_col) == 2                                        # the table apart from the rest of the scene
    edges = control_video(rgb, maps, "edge")
    assert set(edges.unique().tolist()) == {0.0, 1.0} and 0.01 < edges.mean() < 0.5
    blur = control_video(rgb, maps, "blur")
    assert blur.shape == rgb.shape and (blur - rgb).abs().mean() > 0.005


def test_nearest_resize_matches_index_sampling():
    """The one torchvision function the Cosmos modules call: nearest resize, as torchvision does it for
    tensors (source index floor(i * in / out))."""
    x = torch.arange(2 * 1 * 6 * 10, dtype=torch.float32).view(2, 1, 6, 10)
    y = _nearest_resize(x, [4, 7], interpolation="nearest")
    rows = (torch.arange(4) * 6 / 4).floor().long()
    cols = (torch.arange(7) * 10 / 7).floor().long()
    assert torch.equal(y, x[:, :, rows][:, :, :, cols])
    assert _nearest_resize(x.bfloat16(), [3, 5]).dtype == torch.bfloat16


def test_weights_come_from_a_local_folder_only(tmp_path):
    with pytest.raises(InputError, match="never downloads"):
        load_cosmos(CosmosConfig(cosmos_weights=str(tmp_path / "nowhere")))
    with pytest.raises(InputError, match="required"):
        load_cosmos(CosmosConfig())
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(InputError, match="control type"):
        load_cosmos(CosmosConfig(cosmos_weights=str(tmp_path)))
    assert control_kind(CosmosConfig(cosmos_weights="w", cosmos_controlnet="/ckpt/controlnet/general/seg")) == "seg"


def test_saved_tiny_pipeline_loads_offline(pipe, clip, tmp_path):
    """save_pretrained, then load_cosmos from the folder with local_files_only (no network): same weights."""
    pipe.save_pretrained(tmp_path / "cosmos")
    pipe.controlnet.save_pretrained(tmp_path / "controlnet-depth")
    cfg = CosmosConfig(cosmos_weights=str(tmp_path / "cosmos"), cosmos_controlnet=str(tmp_path / "controlnet-depth"),
                       device="cpu")
    loaded = load_cosmos(cfg, safety_checker=PassThroughChecker(), text_encoder=False)
    assert control_kind(cfg) == "depth"
    a = dict(pipe.controlnet.named_parameters())
    assert all(torch.equal(a[k], v) for k, v in loaded.controlnet.named_parameters())
    loaded.set_progress_bar_config(disable=True)
    rgb, maps = clip
    rgb, maps = rgb[:5], {k: (v[:5] if k in ("depth", "seg", "normal", "world_to_cam") else v) for k, v in maps.items()}
    run = CosmosConfig(**{**cfg.__dict__, "height": 32, "frames_per_clip": 5, "steps": 1, "guidance": 1.0, "seed": 0})
    pos, _ = _embeds()
    assert torch.equal(restyle_cosmos(loaded, rgb, maps, cfg=run, prompt_embeds=pos),
                       restyle_cosmos(pipe, rgb, maps, cfg=run, prompt_embeds=pos))


def test_style_prompt_describes_the_style():
    s = sample_style(0, "held_out")
    text = style_prompt(s)
    assert s.table_texture.palette in text and s.robot_texture.palette.replace("_", " ") in text
    assert style_prompt(sample_style(0, "train", families=[])).startswith("A realistic video")
