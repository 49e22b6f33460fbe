"""The feed-forward geometry network: the official VGGT-1B state-dict layout (built on `meta`), a tiny
configuration's forward pass, pose-encoding round trips on analytic cameras, depth unprojection on an
analytic plane, and strict checkpoint loading (.pt / .safetensors, fp32 / bf16 / fp16)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spatial import look_at
from spatial.feedforward import (
    VGGT_1B,
    build_vggt,
    decode_pose,
    encode_pose,
    load_vggt_weights,
    matrix_to_quaternion,
    quaternion_to_matrix,
    tiny_config,
    unproject_depth,
)
from spatial.feedforward.layers import RoPE2D
from twin_kit import InputError, torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: the thread pool's fork/join costs more than the work, badly so on a busy machine."""
    with torch_threads(1):
        yield

# ---------------------------------------------------------------------------------------------------------
# The official layout, written out from VGGT's source (vggt/models, heads, layers): names and shapes only.


def _ln(p, d):
    return {f"{p}.weight": (d,), f"{p}.bias": (d,)}


def _linear(p, o, i):
    return {f"{p}.weight": (o, i), f"{p}.bias": (o,)}


def _conv(p, o, i, k, bias=True):
    return {f"{p}.weight": (o, i, k, k), **({f"{p}.bias": (o,)} if bias else {})}


def _vit_block(p, d, qk_head=None):
    s = {**_ln(f"{p}.norm1", d), **_linear(f"{p}.attn.qkv", 3 * d, d), **_linear(f"{p}.attn.proj", d, d),
         f"{p}.ls1.gamma": (d,), **_ln(f"{p}.norm2", d), **_linear(f"{p}.mlp.fc1", 4 * d, d),
         **_linear(f"{p}.mlp.fc2", d, 4 * d), f"{p}.ls2.gamma": (d,)}
    if qk_head:
        s |= {**_ln(f"{p}.attn.q_norm", qk_head), **_ln(f"{p}.attn.k_norm", qk_head)}
    return s


def _dpt(p, features, output_dim=None):
    s = _ln(f"{p}.norm", 2048)
    for k, oc in enumerate((256, 512, 1024, 1024)):
        s |= _conv(f"{p}.projects.{k}", oc, 2048, 1)
        s |= _conv(f"{p}.scratch.layer{k + 1}_rn", features, oc, 3, bias=False)
    s |= {f"{p}.resize_layers.0.weight": (256, 256, 4, 4), f"{p}.resize_layers.0.bias": (256,),
          f"{p}.resize_layers.1.weight": (512, 512, 2, 2), f"{p}.resize_layers.1.bias": (512,),
          **_conv(f"{p}.resize_layers.3", 1024, 1024, 3)}
    for r in (1, 2, 3, 4):
        q = f"{p}.scratch.refinenet{r}"
        s |= _conv(f"{q}.out_conv", features, features, 1)
        for unit in ("resConfUnit1", "resConfUnit2") if r < 4 else ("resConfUnit2",):
            s |= _conv(f"{q}.{unit}.conv1", features, features, 3) | _conv(f"{q}.{unit}.conv2", features, features, 3)
    if output_dim is None:
        s |= _conv(f"{p}.scratch.output_conv1", features, features, 3)
    else:
        s |= _conv(f"{p}.scratch.output_conv1", features // 2, features, 3)
        s |= _conv(f"{p}.scratch.output_conv2.0", 32, features // 2, 3)
        s |= _conv(f"{p}.scratch.output_conv2.2", output_dim, 32, 1)
    return s


def _mha_block(p, d, cross=False):
    attn = "cross_attn" if cross else "attn"
    s = {**_ln(f"{p}.norm1", d), **_ln(f"{p}.norm2", d), f"{p}.{attn}.in_proj_weight": (3 * d, d),
         f"{p}.{attn}.in_proj_bias": (3 * d,), **_linear(f"{p}.{attn}.out_proj", d, d),
         **_linear(f"{p}.mlp.fc1", 4 * d, d), **_linear(f"{p}.mlp.fc2", d, 4 * d)}
    return s | (_ln(f"{p}.norm_context", d) if cross else {})


def official_vggt_1b_layout() -> dict[str, tuple[int, ...]]:
    s = {"aggregator.camera_token": (1, 2, 1, 1024), "aggregator.register_token": (1, 2, 4, 1024),
         "aggregator.patch_embed.cls_token": (1, 1, 1024), "aggregator.patch_embed.pos_embed": (1, 37 * 37 + 1, 1024),
         "aggregator.patch_embed.register_tokens": (1, 4, 1024), "aggregator.patch_embed.mask_token": (1, 1024),
         **_conv("aggregator.patch_embed.patch_embed.proj", 1024, 3, 14), **_ln("aggregator.patch_embed.norm", 1024)}
    for i in range(24):
        s |= _vit_block(f"aggregator.patch_embed.blocks.{i}", 1024)
        s |= _vit_block(f"aggregator.frame_blocks.{i}", 1024, qk_head=64)
        s |= _vit_block(f"aggregator.global_blocks.{i}", 1024, qk_head=64)
    for i in range(4):
        s |= _vit_block(f"camera_head.trunk.{i}", 2048)
    s |= {**_ln("camera_head.token_norm", 2048), **_ln("camera_head.trunk_norm", 2048),
          "camera_head.empty_pose_tokens": (1, 1, 9), **_linear("camera_head.embed_pose", 2048, 9),
          **_linear("camera_head.poseLN_modulation.1", 3 * 2048, 2048),
          **_linear("camera_head.pose_branch.fc1", 1024, 2048), **_linear("camera_head.pose_branch.fc2", 9, 1024)}
    s |= _dpt("depth_head", 256, 2) | _dpt("point_head", 256, 4) | _dpt("track_head.feature_extractor", 128)
    t = "track_head.tracker"
    s |= {**_linear(f"{t}.corr_mlp.fc1", 384, 7 * 9 * 9), **_linear(f"{t}.corr_mlp.fc2", 128, 384),
          f"{t}.query_ref_token": (1, 2, 388), **_ln(f"{t}.fmap_norm", 128), **_ln(f"{t}.ffeat_norm", 128),
          **_linear(f"{t}.ffeat_updater.0", 128, 128), **_linear(f"{t}.vis_predictor.0", 1, 128),
          **_linear(f"{t}.conf_predictor.0", 1, 128)}
    u = f"{t}.updateformer"
    s |= {**_ln(f"{u}.input_norm", 388), **_linear(f"{u}.input_transform", 384, 388), **_ln(f"{u}.output_norm", 384),
          **_linear(f"{u}.flow_head", 130, 384), f"{u}.virual_tracks": (1, 64, 1, 384)}
    for i in range(6):
        s |= _mha_block(f"{u}.time_blocks.{i}", 384) | _mha_block(f"{u}.space_virtual_blocks.{i}", 384)
        s |= _mha_block(f"{u}.space_point2virtual_blocks.{i}", 384, cross=True)
        s |= _mha_block(f"{u}.space_virtual2point_blocks.{i}", 384, cross=True)
    return s


def test_1b_network_on_meta_has_every_official_parameter_name_and_shape():
    model = build_vggt(VGGT_1B, device="meta")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = official_vggt_1b_layout()
    assert sorted(set(want) - set(got)) == []
    assert sorted(set(got) - set(want)) == []
    assert {k: got[k] for k in want if got[k] != want[k]} == {}
    # 1,256,537,516 fp32 parameters = 5.03 GB, the size of the published model.safetensors
    assert sum(math.prod(s) for s in want.values()) == 1_256_537_516
    assert sum(p.numel() for p in model.parameters()) == 1_256_537_516


# ---------------------------------------------------------------------------------------------------------
# Tiny configuration: a real forward pass on the CPU.


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_vggt(tiny_config()).eval()


def test_tiny_forward_gives_every_output_at_full_resolution(tiny):
    images = torch.rand(2, 3, 3, 28, 42)
    queries = torch.tensor([[4.0, 5.0], [30.0, 20.0]]).expand(2, -1, -1)
    with torch.no_grad():
        out = tiny(images, query_points=queries)
    assert out["pose_enc"].shape == (2, 3, 9) and len(out["pose_enc_list"]) == 4
    assert out["depth"].shape == (2, 3, 28, 42, 1) and out["depth_conf"].shape == (2, 3, 28, 42)
    assert out["world_points"].shape == (2, 3, 28, 42, 3) and out["world_points_conf"].shape == (2, 3, 28, 42)
    assert out["track"].shape == (2, 3, 2, 2) and out["vis"].shape == out["conf"].shape == (2, 3, 2)
    assert all(torch.isfinite(v).all() for v in out.values() if torch.is_tensor(v))
    assert (out["depth"] > 0).all() and (out["depth_conf"] > 1).all() and (out["world_points_conf"] > 1).all()
    assert (out["pose_enc"][..., 7:] >= 0).all()                      # fields of view through a ReLU
    assert torch.equal(out["track"][:, 0], queries)                   # frame 0 holds the query points
    # a single unbatched sequence is accepted too
    with torch.no_grad():
        single = tiny(images[0])
    assert torch.allclose(single["depth"][0], out["depth"][0], atol=1e-5)


def test_frames_after_the_first_are_interchangeable(tiny):
    """Only frame 0 has its own camera/register slot: permuting the others permutes every output."""
    images = torch.rand(1, 4, 3, 28, 28)
    order = torch.tensor([0, 3, 1, 2])
    with torch.no_grad():
        a, b = tiny(images), tiny(images[:, order])
    for key in ("pose_enc", "depth", "world_points"):
        assert torch.allclose(a[key][:, order], b[key], atol=1e-4), key


def test_only_the_layers_the_heads_read_are_kept(tiny):
    images = torch.rand(1, 2, 3, 28, 28)
    with torch.no_grad():
        every, _ = tiny.aggregator(images)
        kept, start = tiny.aggregator(images, keep=frozenset({1, 3}))
    assert start == 5 and [t is None for t in kept] == [True, False, True, False]
    assert torch.equal(kept[3], every[3]) and every[3].shape == (1, 2, 5 + 4, 64)


def test_backbone_matches_transformers_dinov2_with_registers():
    """An independent DINOv2-with-registers (transformers) with the same weights gives the same patch tokens,
    at the stored 4x4 grid and at a resized 2x3 one (bicubic, antialiased position grid)."""
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    from spatial.feedforward.backbone import DinoBackbone

    torch.manual_seed(2)
    ours = DinoBackbone(56, 14, 32, depth=2, num_heads=2, num_register_tokens=4).eval()
    hf = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=4, image_size=56, patch_size=14,
        num_register_tokens=4, layerscale_value=1.0, layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True)).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.2)
        sd = ours.state_dict()
        mapped = {"embeddings.cls_token": sd["cls_token"], "embeddings.mask_token": sd["mask_token"],
                  "embeddings.position_embeddings": sd["pos_embed"],
                  "embeddings.register_tokens": sd["register_tokens"],
                  "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
                  "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
                  "layernorm.weight": sd["norm.weight"], "layernorm.bias": sd["norm.bias"]}
        for i in range(2):
            b, h = f"blocks.{i}.", f"encoder.layer.{i}."
            for j, name in enumerate("qkv"):
                mapped[h + f"attention.{name}_proj.weight"] = sd[b + "attn.qkv.weight"][32 * j:32 * (j + 1)]
                mapped[h + f"attention.{name}_proj.bias"] = sd[b + "attn.qkv.bias"][32 * j:32 * (j + 1)]
            pairs = {"attention.o_proj": "attn.proj", "norm1": "norm1", "norm2": "norm2", "mlp.fc1": "mlp.fc1",
                     "mlp.fc2": "mlp.fc2"}
            for theirs, mine in pairs.items():
                mapped[h + theirs + ".weight"] = sd[b + mine + ".weight"]
                mapped[h + theirs + ".bias"] = sd[b + mine + ".bias"]
            mapped[h + "layer_scale1.lambda1"] = sd[b + "ls1.gamma"]
            mapped[h + "layer_scale2.lambda1"] = sd[b + "ls2.gamma"]
        hf.load_state_dict(mapped, strict=True)
        for hw in ((56, 56), (28, 42)):
            x = torch.randn(2, 3, *hw)
            theirs = hf(pixel_values=x).last_hidden_state[:, 5:]
            assert torch.allclose(ours(x), theirs, atol=1e-4), hw


def test_rope_scores_depend_only_on_relative_position():
    rope = RoPE2D(100.0)
    q, k = torch.randn(1, 2, 1, 16), torch.randn(1, 2, 1, 16)

    def score(pq, pk):
        return (rope(q, torch.tensor([[pq]])) * rope(k, torch.tensor([[pk]]))).sum(-1)

    assert torch.allclose(score((2, 3), (5, 1)), score((4, 6), (7, 4)), atol=1e-5)
    assert not torch.allclose(score((2, 3), (5, 1)), score((2, 3), (1, 5)), atol=1e-3)
    assert torch.allclose(rope(q, torch.tensor([[(3, 9)]])).norm(dim=-1), q.norm(dim=-1), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Geometry: pose encoding and depth unprojection against analytic cameras.


def _analytic_cameras(H=30, W=40, eyes=((2.0, -3.0, 1.5), (-1.0, -2.5, 2.0), (0.5, 3.0, 1.0), (0.0, 0.0, 4.0))):
    targets = [(0.0, 0.0, 0.0), (0.3, 0.2, 0.1), (0.0, 0.5, 0.0), (0.1, 0.0, 0.0)]
    ext, K = [], []
    for i, (eye, target) in enumerate(zip(eyes, targets)):
        R, t = look_at(np.array(eye), np.array(target), up=(0.0, 0.0, 1.0) if i < 3 else (0.0, 1.0, 0.0))
        ext.append(np.concatenate([R, t[:, None]], axis=1))
        f = 30.0 + 5 * i
        K.append([[f, 0, W / 2], [0, f * 1.1, H / 2], [0, 0, 1]])
    return torch.tensor(np.array(ext))[None], torch.tensor(K, dtype=torch.float64)[None], (H, W)


def test_pose_encoding_round_trips_analytic_cameras():
    ext, K, hw = _analytic_cameras()
    enc = encode_pose(ext, K, hw)
    assert enc.shape == (1, 4, 9)
    ext2, K2 = decode_pose(enc.double(), hw)
    assert torch.allclose(ext2, ext, atol=1e-5) and torch.allclose(K2, K, atol=1e-3)
    assert torch.allclose(enc[..., :3].double(), ext[..., :3, 3], atol=1e-6)        # translation is t itself
    # a 90 degree turn about z is (0, 0, sin 45, cos 45) in XYZW
    Rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(matrix_to_quaternion(Rz), torch.tensor([0, 0, 0.5 ** 0.5, 0.5 ** 0.5]), atol=1e-6)
    fov_w = 2 * math.atan(20 / 30.0)
    assert abs(float(enc[0, 0, 8]) - fov_w) < 1e-6


def test_quaternions_round_trip_every_branch_including_half_turns():
    torch.manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(500, 4, dtype=torch.float64), dim=-1)
    half_turns = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0.6, 0.8, 0, 1e-9]],
                              dtype=torch.float64)
    q = torch.cat([q, torch.nn.functional.normalize(half_turns, dim=-1)])
    R = quaternion_to_matrix(q)
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(len(q), 3, 3), atol=1e-9)
    back = matrix_to_quaternion(R)
    assert (back[:, 3] >= 0).all()
    assert torch.allclose(quaternion_to_matrix(back), R, atol=1e-9)
    assert torch.allclose(back.abs(), q.abs(), atol=1e-6)


def test_unprojected_depth_lands_on_the_plane_it_was_rendered_from():
    """Depth of the ground plane z = 0 seen by each analytic camera, by ray casting, unprojects onto it."""
    ext, K, (H, W) = _analytic_cameras(eyes=((1.0, -1.5, 3.0), (-1.0, -1.0, 2.5), (0.5, 1.0, 3.0), (0, 0, 4)))
    ext, K = ext[0, :3], K[0, :3]                      # three cameras that see only the plane, from above
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                          indexing="ij")
    depths = []
    for E, k in zip(ext, K):
        R, t = E[:, :3], E[:, 3]
        ray_cam = torch.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], torch.ones_like(u)], dim=-1)
        ray_world = ray_cam @ R                           # R^T d for each pixel
        centre = -R.T @ t
        s = -centre[2] / ray_world[..., 2]                # along the ray until z = 0; depth = s (ray z = 1)
        depths.append(s)
    depth = torch.stack(depths)[None, ..., None]          # (1, 3, H, W, 1)
    assert (depth > 0).all()
    pts = unproject_depth(depth, ext[None], K[None])
    assert pts.shape == (1, 3, H, W, 3)
    assert pts[..., 2].abs().max() < 1e-9                  # on the plane
    # and each point projects back to its own pixel
    cam = torch.einsum("sij,shwj->shwi", ext[:, :, :3], pts[0]) + ext[:, None, None, :, 3]
    pix = torch.einsum("sij,shwj->shwi", K, cam)
    assert torch.allclose(pix[..., 0] / pix[..., 2], u.expand(3, H, W), atol=1e-7)
    assert torch.allclose(pix[..., 1] / pix[..., 2], v.expand(3, H, W), atol=1e-7)
    # (S, H, W) depth without the channel gives the same
    assert torch.allclose(unproject_depth(depth[0, ..., 0], ext, K), pts[0])


# ---------------------------------------------------------------------------------------------------------
# Checkpoints.


def _save(state, path):
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)


@pytest.mark.parametrize("suffix,dtype", [(".pt", torch.float32), (".safetensors", torch.float32),
                                          (".safetensors", torch.bfloat16), (".pt", torch.float16)])
def test_checkpoints_load_strictly_and_reproduce_the_network(tiny, tmp_path, suffix, dtype):
    path = tmp_path / f"model{suffix}"
    _save({k: v.to(dtype) for k, v in tiny.state_dict().items()}, path)
    images = torch.rand(1, 2, 3, 28, 28)
    with torch.no_grad():
        ref = tiny(images)
        for fresh in (build_vggt(tiny_config()), build_vggt(tiny_config(), device="meta")):
            load_vggt_weights(fresh, path)
            assert all(p.dtype == torch.float32 and not p.is_meta for p in fresh.parameters())
            out = fresh.eval()(images)
            tol = 0 if dtype == torch.float32 else 0.05
            assert torch.allclose(out["depth"], ref["depth"], rtol=tol, atol=tol)
            assert torch.allclose(out["pose_enc"], ref["pose_enc"], rtol=tol, atol=tol)


def test_a_checkpoint_wrapped_under_model_loads_and_can_be_cast(tiny, tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": tiny.state_dict()}, path)
    model = load_vggt_weights(build_vggt(tiny_config(), device="meta"), path, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_mismatched_checkpoints_are_one_line_errors_naming_the_key(tiny, tmp_path):
    state = tiny.state_dict()
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "camera_head.embed_pose.bias"},
                    "missing parameter 'camera_head.embed_pose.bias'"),
        "shape": ({**state, "aggregator.camera_token": torch.zeros(1, 2, 1, 8)},
                  "'aggregator.camera_token' has shape (1, 2, 1, 8)"),
        "extra": ({**state, "aggregator.extra.weight": torch.zeros(3)},
                  "unexpected parameter 'aggregator.extra.weight'"),
        "dtype": ({**state, "aggregator.camera_token": state["aggregator.camera_token"].to(torch.int32)},
                  "is torch.int32"),
    }
    for name, (bad, message) in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(bad, path)
        with pytest.raises(InputError) as err:
            load_vggt_weights(build_vggt(tiny_config()), path)
        assert message in str(err.value) and "\n" not in str(err.value), name
    # the 1B layout refuses the tiny checkpoint at its first key
    path = tmp_path / "tiny.pt"
    torch.save(state, path)
    with pytest.raises(InputError, match="has shape"):
        load_vggt_weights(build_vggt(VGGT_1B, device="meta"), path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    for bad_path, message in [(garbage, "not a readable safetensors file"), (tmp_path / "none.pt", "no such weights")]:
        with pytest.raises(InputError, match=message):
            load_vggt_weights(build_vggt(tiny_config()), bad_path)


# ---------------------------------------------------------------------------------------------------------
# Preprocessing as VGGT's load_fn: sizes per mode, and the map from network pixels back to the source.


@pytest.mark.parametrize("mode,src,net_size,offset", [
    ("crop", (640, 480), (518, 392), (0, 0)),       # landscape: width 518, height to a multiple of 14
    ("crop", (480, 640), (518, 518), (0, 84)),      # portrait: 686 high, centre-cropped to 518
    ("pad", (480, 640), (518, 518), (-63, 0)),      # portrait: 392 wide, padded white to 518
    ("fit", (480, 640), (392, 518), (0, 0)),        # the whole frame, longest side 518
])
def test_preprocessing_sizes_and_the_way_back_to_source_pixels(mode, src, net_size, offset):
    from spatial.feedforward.preprocess import prepare_image

    W, H = src
    image = np.full((H, W, 3), 215, np.uint8)
    dot = (W // 2 + 37, H // 2 - 29)                    # a dark 5x5 square inside every crop
    image[dot[1] - 2:dot[1] + 3, dot[0] - 2:dot[0] + 3] = 0
    x, framing = prepare_image(image, mode)
    assert (x.shape[2], x.shape[1]) == framing.size == net_size
    assert (framing.ox, framing.oy) == offset
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    if mode == "pad":
        assert torch.all(x[:, :, :10] == 1.0)           # white padding on the left
    weight = (0.6 - x.mean(0)).clamp(min=0)              # the dot, not the white padding
    vv, uu = torch.meshgrid(torch.arange(weight.shape[0]), torch.arange(weight.shape[1]), indexing="ij")
    u, v = float((weight * uu).sum() / weight.sum()), float((weight * vv).sum() / weight.sum())
    fx, fy, cx, cy = framing.to_source_intrinsics(1.0, 1.0, u, v)   # a point maps like a principal point
    assert abs(cx - dot[0]) < 0.3 and abs(cy - dot[1]) < 0.3


def test_sequences_of_mixed_sizes_are_padded_to_one_shape():
    from spatial.feedforward.preprocess import prepare_images

    x, framings = prepare_images([np.zeros((480, 640, 3), np.uint8), np.zeros((300, 640, 3), np.uint8)])
    assert x.shape == (2, 3, 392, 518) and all(f.size == (518, 392) for f in framings)
    assert framings[1].oy < 0 and torch.all(x[1, :, 0] == 1.0)
