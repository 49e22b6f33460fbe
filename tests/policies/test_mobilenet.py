"""The MobileNetV2 backbone: the ImageNet weights Twin installs load strictly (and torchvision-named files too),
its feature map matches the ResNet's, and frozen blocks train nothing and stay in inference mode."""
from __future__ import annotations

import pytest
import torch
from support.policy_data import CHUNK, assert_reloaded_and_onnx_match, training_batch, write_policy_dataset
from support.policy_data import TINY_64 as TINY

from policies import (
    ImageEncoder,
    MobileNetV2,
    PolicyFeatures,
    ResNet,
    feature_size,
    load_policy,
    make_policy,
    read_dataset,
)
from policies.act.configuration_act import ACTConfig
from policies.train.config import TrainConfig
from policies.vision import mobilenet
from policies.vision.mobilenet import load_mobilenet_weights, packaged_mobilenet_weights
from policies.vision.trunk import read_state_dict
from twin_kit import InputError, torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _to_torchvision(sd: dict[str, torch.Tensor], expands: dict[int, bool]) -> dict[str, torch.Tensor]:
    """The same weights as torchvision's mobilenet_v2 nests them (conv-norm-activation groups)."""
    slots = {True: {0: "0.0", 1: "0.1", 3: "1.0", 4: "1.1", 6: "2", 7: "3"},
             False: {0: "0.0", 1: "0.1", 3: "1", 4: "2"}}
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        if p[2:3] == ["conv"]:
            k = ".".join(p[:3] + [slots[expands[int(p[1])]][int(p[3])]] + p[4:])
        out[k] = v
    out["classifier.1.weight"], out["classifier.1.bias"] = torch.zeros(1000, 1280), torch.zeros(1000)
    return out


def test_packaged_imagenet_weights_load_strictly():
    path = packaged_mobilenet_weights()
    file = read_state_dict(path)
    assert len(file) == 312  # 52 convolutions, 52 batch norms of 5 entries each, up to the last 1x1 convolution
    for layers, channels, blocks in ((3, 96, 14), (4, 320, 18)):
        m = MobileNetV2(1.0, layers)
        load_mobilenet_weights(m, path)
        assert m.out_channels == channels and len(m.features) == blocks
        sd = m.state_dict()
        for k in ("features.0.0.weight", "features.1.conv.3.weight", f"features.{blocks - 1}.conv.7.running_var"):
            assert torch.equal(sd[k], file[k]), k
    # ImageNet statistics, not a fresh init: the stem's batch norm has learned means and variances
    assert not torch.allclose(sd["features.0.1.running_var"], torch.ones(32))


def test_torchvision_named_file_loads_to_the_same_network(tmp_path):
    ours = MobileNetV2(1.0, 4)
    load_mobilenet_weights(ours, packaged_mobilenet_weights())
    ours.eval()
    expands = {i: len(getattr(b, "conv", ())) == 8 for i, b in enumerate(ours.features)}
    tv = _to_torchvision(read_state_dict(packaged_mobilenet_weights()), expands)
    assert "features.1.conv.0.0.weight" in tv and "features.2.conv.1.0.weight" in tv
    torch.save(tv, tmp_path / "mobilenet_v2.pth")
    again = MobileNetV2(1.0, 4)
    load_mobilenet_weights(again, tmp_path / "mobilenet_v2.pth")
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), ours(x))


@pytest.mark.parametrize("size", [96, 112, 128])
@pytest.mark.parametrize("layers", [3, 4])
def test_feature_map_matches_the_resnet(size, layers):
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        f = MobileNetV2(0.5, layers).eval()(x)
        r = ResNet(0.25, layers).eval()(x)
    assert f.shape[-2:] == r.shape[-2:] == (feature_size(size, layers),) * 2


@pytest.mark.parametrize("backbone, frozen, fixed_prefixes, training_prefixes", [
    ("mobilenet_v2", -1, ("features.",), ()),
    ("mobilenet_v2", 11, tuple(f"features.{i}." for i in range(11)), ("features.11.", "features.13.")),
    ("resnet18", 2, ("conv1.", "bn1.", "layer1."), ("layer2.", "layer3.")),
])
def test_frozen_blocks_train_nothing_and_stay_in_inference_mode(backbone, frozen, fixed_prefixes, training_prefixes):
    """The first `frozen` blocks (-1: all) keep their weights and running statistics through training steps at a
    high learning rate, their batch norms stay in inference mode; the blocks after them train."""
    torch.manual_seed(0)
    kw = dict(weights="imagenet", backbone="mobilenet_v2") if backbone == "mobilenet_v2" else dict(width=0.25)
    enc = ImageEncoder(2, 32, 96, layers=3, frozen=frozen, **kw).train()
    params = dict(enc.backbone.named_parameters())
    assert all(not p.requires_grad for k, p in params.items() if k.startswith(fixed_prefixes))
    assert all(p.requires_grad for k, p in params.items() if k.startswith(training_prefixes))
    norms = {k: m for k, m in enc.backbone.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert not any(m.training for k, m in norms.items() if f"{k}.".startswith(fixed_prefixes)) and enc.proj.training
    assert all(m.training for k, m in norms.items() if f"{k}.".startswith(training_prefixes))
    before = {k: v.clone() for k, v in enc.backbone.state_dict().items()}
    opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad], 1e-2)
    for _ in range(3):
        opt.zero_grad()
        tokens, _ = enc(torch.randn(4, 2, 3, 96, 96))
        tokens.square().mean().backward()
        opt.step()
    assert enc.proj.weight.grad is not None and enc.proj.weight.grad.abs().sum() > 0
    for k, v in enc.backbone.state_dict().items():  # weights and running statistics alike
        if k.startswith(fixed_prefixes):
            assert torch.equal(v, before[k]), k
        elif k.startswith(training_prefixes) and v.is_floating_point():
            assert not torch.equal(v, before[k]), k


def test_policy_with_frozen_imagenet_backbone_groups_no_backbone_parameters():
    stats = {"observation.state": {"mean": [0.0] * 3, "std": [1.0] * 3},
             "action": {"mean": [0.0] * 3, "std": [0.5] * 3}}
    features = PolicyFeatures(state_names=["a", "b", "c"], action_names=["a", "b", "c"], stats=stats,
                              cameras={"observation.images.front": [96, 96]})
    cfg = ACTConfig(backbone="mobilenet_v2", backbone_weights="imagenet", backbone_width=1.0, backbone_layers=3,
                    frozen_blocks=-1, dim=32, heads=2, ff_dim=64, image_size=96)
    policy = make_policy("act", cfg, features)
    groups = policy.optim_groups()
    assert len(groups) == 1 and all(p.requires_grad for p in groups[0]["params"])
    assert sum(p.numel() for p in policy.images.backbone.parameters()) > 500_000
    assert policy.num_parameters(trainable=True) < policy.num_parameters() - 500_000


def test_bad_weights_and_settings_are_refused(tmp_path, monkeypatch):
    torch.save(ResNet(1.0).state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(InputError, match="not MobileNetV2 weights"):
        load_mobilenet_weights(MobileNetV2(1.0, 3), tmp_path / "resnet18.pth")
    torch.save({"features.stem.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="not MobileNetV2 weights"):
        load_mobilenet_weights(MobileNetV2(1.0, 3), tmp_path / "other.pth")
    with pytest.raises(InputError, match="width"):
        load_mobilenet_weights(MobileNetV2(0.5, 3), packaged_mobilenet_weights())
    with pytest.raises(InputError, match="no such backbone weights file"):
        load_mobilenet_weights(MobileNetV2(1.0, 3), tmp_path / "missing.pt")
    with pytest.raises(InputError, match="mobilenet_v2 only"):
        ACTConfig(backbone_weights="imagenet", backbone_width=1.0)
    with pytest.raises(InputError, match="backbone_width 1.0"):
        ACTConfig(backbone="mobilenet_v2", backbone_weights="imagenet", backbone_width=0.5)
    with pytest.raises(InputError, match="layers must be 3 or 4"):
        MobileNetV2(1.0, 2)
    monkeypatch.setattr(mobilenet, "PACKAGE", "twin-no-such-package")
    with pytest.raises(InputError, match="not installed"):
        packaged_mobilenet_weights()


def test_train_options_choose_the_backbone_and_its_imagenet_weights():
    cfg = TrainConfig(dataset=["d"], out="runs/x", backbone="mobilenet_v2", pretrained_backbone="imagenet",
                      policy_config='{"frozen_blocks": -1}')
    fields = cfg.policy_fields()
    assert fields["backbone"] == "mobilenet_v2" and fields["backbone_weights"] == "imagenet"
    assert fields["backbone_width"] == 1.0 and fields["frozen_blocks"] == -1
    ACTConfig(**fields)  # a valid policy config


def test_saved_imagenet_policy_reloads_and_exports_to_onnx(tmp_path, monkeypatch):
    """An ACT policy on the frozen ImageNet backbone, a few training steps, saved: the folder reloads without the
    weights file (its weights are in the folder) and its ONNX graph equals PyTorch on recorded observations."""
    root = write_policy_dataset(tmp_path / "ds")
    raw = training_batch(root, CHUNK, [(0, 0), (0, 6), (1, 3)])
    cfg = {**TINY["act"], "backbone": "mobilenet_v2", "backbone_weights": "imagenet", "backbone_width": 1.0,
           "backbone_layers": 3, "frozen_blocks": -1}
    torch.manual_seed(0)
    policy = make_policy("act", cfg, read_dataset(root))
    opt = torch.optim.AdamW([p for g in policy.optim_groups() for p in g["params"]], lr=1e-3)
    batch = policy.preprocessor(raw)
    for _ in range(3):
        loss, _ = policy(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval().save_pretrained(tmp_path / "policy")
    monkeypatch.setattr(mobilenet, "PACKAGE", "twin-no-such-package")  # as on a robot without it installed
    again = load_policy(tmp_path / "policy")
    assert isinstance(again.images.backbone, MobileNetV2)
    assert_reloaded_and_onnx_match(policy, again, raw, tmp_path / "policy.onnx")
