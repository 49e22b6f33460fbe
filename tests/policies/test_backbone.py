"""The ResNet-18 backbone written in Twin: torchvision's names and shapes (so its weights load strictly from a
local file), feature-map sizes at 96-128 px, the width multiplier, image preprocessing and 2D positions."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from support.policy_data import CHUNK, assert_reloaded_and_onnx_match, training_batch, write_policy_dataset
from support.policy_data import TINY_64 as TINY

from policies import (
    ImageEncoder,
    ImagePreprocess,
    ResNet,
    feature_size,
    load_policy,
    load_resnet_weights,
    make_policy,
    read_dataset,
    sinusoidal_2d,
)
from policies.vision.mobilenet import MobileNetV2
from policies.vision.trunk import ConvNormSequential, conv_norm
from twin_kit import InputError, torch_threads

# torchvision's resnet18 state dict, as its model and its file resnet18-f37072fd.pth spell it (a few entries):
TORCHVISION_SHAPES = {
    "conv1.weight": (64, 3, 7, 7),
    "bn1.running_mean": (64,),
    "layer1.0.conv1.weight": (64, 64, 3, 3),
    "layer1.1.bn2.bias": (64,),
    "layer2.0.conv1.weight": (128, 64, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer2.0.downsample.1.running_var": (128,),
    "layer3.1.conv2.weight": (256, 256, 3, 3),
    "layer4.0.downsample.0.weight": (512, 256, 1, 1),
    "layer4.1.bn2.weight": (512,),
    "fc.weight": (1000, 512),
    "fc.bias": (1000,),
}
# 20 convolutions and 20 batch norms (weight, bias, running mean, running variance) and fc: 102 tensors in the
# file; torchvision's model adds a num_batches_tracked counter per batch norm (122).
FILE_TENSORS = 102
MODEL_ENTRIES = 122


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _randomised(width: float = 1.0, layers: int = 4) -> ResNet:
    """A backbone with non-trivial weights and batch-norm statistics, in eval mode."""
    torch.manual_seed(0)
    m = ResNet(width, layers)
    with torch.no_grad():
        for k, v in m.state_dict().items():
            if v.is_floating_point():
                v.copy_(torch.rand_like(v) * 0.5 + 0.5 if k.endswith(("running_var", "bn1.weight", "bn2.weight"))
                        else torch.randn_like(v) * 0.05)
    return m.eval()


def _torchvision_file(m: ResNet) -> dict[str, torch.Tensor]:
    """What torchvision's resnet18 weights file holds for these weights: no counters, plus the classifier."""
    sd = {k: v.clone() for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    sd["fc.weight"] = torch.randn(1000, 512)
    sd["fc.bias"] = torch.zeros(1000)
    return sd


def test_names_and_shapes_are_torchvisions():
    m = ResNet(1.0)
    sd = m.state_dict()
    file_like = _torchvision_file(m)
    assert len(file_like) == FILE_TENSORS
    assert len(sd) + 2 == MODEL_ENTRIES  # + fc.weight, fc.bias
    for k, shape in TORCHVISION_SHAPES.items():
        assert tuple(file_like[k].shape) == shape, k
    assert sum(p.numel() for p in m.parameters()) + 512 * 1000 + 1000 == 11_689_512  # torchvision's count
    assert "layer1.0.downsample.0.weight" not in sd  # layer1 keeps 64 channels: no projection


def test_torchvision_weights_load_strictly_from_pth_and_safetensors(tmp_path):
    src = _randomised()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        want = src(x)
    pth = tmp_path / "resnet18-f37072fd.pth"
    torch.save(_torchvision_file(src), pth)
    st = tmp_path / "resnet18.safetensors"
    save_file(_torchvision_file(src), str(st))
    for path in (pth, st):
        m = ResNet(1.0)
        load_resnet_weights(m, path)
        with torch.no_grad():
            assert torch.equal(m.eval()(x), want)
    three = ResNet(1.0, layers=3)  # a truncated backbone drops layer4 from the same file
    load_resnet_weights(three, pth)
    assert torch.equal(three.layer3[1].conv2.weight, src.layer3[1].conv2.weight)


def test_bad_weight_files_are_refused_in_one_line(tmp_path):
    pth = tmp_path / "w.pth"
    sd = _torchvision_file(ResNet(1.0))
    torch.save(sd, pth)
    with pytest.raises(InputError, match="another width"):
        load_resnet_weights(ResNet(0.5), pth)
    del sd["layer2.1.conv1.weight"]
    torch.save(sd, pth)
    with pytest.raises(InputError, match="1 tensors missing"):
        load_resnet_weights(ResNet(1.0), pth)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        load_resnet_weights(ResNet(1.0), tmp_path / "junk.pth")
    with pytest.raises(InputError, match="no such"):
        load_resnet_weights(ResNet(1.0), tmp_path / "missing.pth")


@pytest.mark.parametrize("size", [96, 112, 128])
@pytest.mark.parametrize("layers", [3, 4])
def test_feature_maps_and_width(size, layers):
    m = ResNet(0.25, layers).eval()
    with torch.no_grad():
        y = m(torch.randn(1, 3, size, size))
    side = feature_size(size, layers)
    assert y.shape == (1, (128 if layers == 4 else 64), side, side)
    assert side == -(-size // m.stride)  # ceil(size / stride)


def test_frozen_batch_norm_stays_fixed_in_training():
    m = ResNet(0.25, frozen_bn=True).train()
    before = m.bn1.running_mean.clone()
    m(torch.randn(4, 3, 96, 96) * 3 + 1)
    assert torch.equal(m.bn1.running_mean, before)
    assert not m.bn1.weight.requires_grad and m.conv1.weight.requires_grad


@pytest.mark.parametrize("groups, stride, bias", [(1, 1, False), (1, 2, True), (8, 1, False)])
def test_conv_norm_folds_an_inference_norm_with_the_same_values_and_gradients(groups, stride, bias):
    """conv_norm(conv, bn, x) == bn(conv(x)) for a batch norm in inference mode, for the output and for the
    gradients of the input, the convolution and the norm's affine parameters (depthwise convolutions included);
    a norm in training mode still normalises with the batch's statistics."""
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(8, 8, 3, stride, 1, groups=groups, bias=bias), torch.nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.3, 3.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0, 0.5)
    bn.eval()
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    grads = []
    for f in (lambda: bn(conv(x)), lambda: conv_norm(conv, bn, x)):
        x.grad = None
        conv.zero_grad()
        bn.zero_grad()
        y = f()
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        grads.append([y.detach(), x.grad, conv.weight.grad, bn.weight.grad, bn.bias.grad]
                     + ([conv.bias.grad] if bias else []))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    bn.train()
    y = conv_norm(conv, bn, x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), bn.bias, atol=1e-5)  # batch statistics, not the running ones


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
def test_folded_trunks_match_their_unfolded_layers(backbone):
    """A whole trunk with frozen batch norms, in training mode, gives what running its layers one by one gives."""
    torch.manual_seed(0)
    m = _randomised(0.25) if backbone == "resnet18" else MobileNetV2(1.0, 3)
    with torch.no_grad():
        for b in m.modules():
            if isinstance(b, torch.nn.BatchNorm2d):
                b.running_var.uniform_(0.5, 2.0)
                b.running_mean.normal_(0, 0.2)
    m.frozen_bn = True
    m.fix_norms()
    m.train()
    x = torch.randn(2, 3, 96, 96)
    if backbone == "mobilenet_v2":  # every conv + norm pair sits in a ConvNormSequential: run those unfolded
        hooks = [s.register_forward_hook(lambda mod, inp, out: torch.nn.Sequential.forward(mod, inp[0]))
                 for s in m.modules() if isinstance(s, ConvNormSequential)]
        try:
            plain = m(x)
        finally:
            for h in hooks:
                h.remove()
    else:  # ResNet's blocks call conv_norm directly: compose their layers by hand
        plain = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        for i in range(m.layers):
            for blk in getattr(m, f"layer{i + 1}"):
                short = plain if blk.downsample is None else blk.downsample[1](blk.downsample[0](plain))
                y = blk.relu(blk.bn1(blk.conv1(plain)))
                plain = blk.relu(blk.bn2(blk.conv2(y)) + short)
    assert torch.allclose(m(x), plain, rtol=1e-4, atol=1e-4)


def test_group_norm_backbone_sees_each_image_on_its_own():
    """norm="group": an image's features are the same alone or beside others, in training as in inference (a
    batch-norm backbone in training mixes the batch's statistics into every image); no batch norm remains."""
    torch.manual_seed(0)
    x = torch.randn(6, 3, 96, 96)
    x[3:] = x[3:] * 4 + 2  # the other half of the batch looks very different
    group, batch = ResNet(0.25, norm="group").train(), ResNet(0.25).train()
    for m in (group, batch):  # non-trivial norm scales (each block's last one starts at zero)
        for k, v in m.named_parameters():
            if k.endswith("bn2.weight"):
                v.data.fill_(1.0)
    with torch.no_grad():
        assert torch.allclose(group(x)[:3], group(x[:3]), atol=1e-5)
        assert torch.allclose(group.eval()(x[:3]), group.train()(x[:3]), atol=1e-6)
        assert not torch.allclose(batch(x)[:3], batch(x[:3]), atol=1e-2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in group.modules())
    assert isinstance(group.layer3[0].downsample[1], torch.nn.GroupNorm) and group.layer3[0].bn1.num_groups == 4
    with pytest.raises(InputError, match="frozen_bn"):
        ResNet(0.25, frozen_bn=True, norm="group")
    with pytest.raises(InputError, match="norm"):
        ResNet(0.25, norm="layer")
    from policies import ACTConfig
    with pytest.raises(InputError, match="backbone_norm group"):
        ACTConfig(backbone_norm="group", frozen_bn=True)


def test_image_preprocess_and_tokens():
    frames = torch.randint(0, 256, (2, 3, 128, 128, 3), dtype=torch.uint8)  # (B, cameras, H, W, 3)
    pre = ImagePreprocess(96)
    x = pre(frames)
    assert x.shape == (2, 3, 3, 96, 96) and x.dtype == torch.float32
    same = ImagePreprocess(128)(frames)  # no resize: exactly ImageNet-normalised pixels
    want = (frames[0, 1].float() / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(same[0, 1], want.permute(2, 0, 1), atol=1e-6)
    assert torch.allclose(ImagePreprocess(128).inverse(same) * 255, frames.float(), atol=1e-3)
    enc = ImageEncoder(3, 32, 96, width=0.25).eval()
    with torch.no_grad():
        tokens, pos = enc(x)
    assert tokens.shape == (2, 3 * 9, 32) and pos.shape == (27, 32)
    grid = sinusoidal_2d(6, 5, 32)
    assert grid.shape == (30, 32) and torch.cdist(grid, grid).fill_diagonal_(1).min() > 0.1  # distinct cells


def test_per_image_norm_is_blind_to_exposure_and_white_balance():
    torch.manual_seed(0)
    frames = torch.rand(2, 64, 64, 3) * 0.6 + 0.1
    shifted = frames * torch.tensor([1.3, 0.9, 0.7]) + torch.tensor([0.05, 0.0, -0.02])  # gain and offset per channel
    pre = ImagePreprocess(64, "per_image")
    x, y = pre(frames), pre(shifted)
    assert torch.allclose(x, y, atol=1e-4)
    assert x.mean(dim=(2, 3)).abs().max() < 1e-5 and torch.allclose(x.std(dim=(2, 3), unbiased=False),
                                                                     torch.ones(2, 3), atol=1e-4)
    imagenet = ImagePreprocess(64)
    assert (imagenet(frames) - imagenet(shifted)).abs().mean() > 0.1  # the fixed normalisation sees the change
    flat = pre(torch.full((1, 64, 64, 3), 0.5))  # a flat frame is not blown up
    assert torch.isfinite(flat).all() and flat.abs().max() == 0
    assert pre.inverse(x).shape == (2, 64, 64, 3)
    with pytest.raises(ValueError, match="image norm"):
        ImagePreprocess(64, "per_batch")


def test_per_image_policy_saves_reloads_and_exports_to_onnx(tmp_path):
    """The normalisation travels with the policy: config.json brings it back, and the ONNX graph computes it."""
    root = write_policy_dataset(tmp_path / "ds")
    raw = training_batch(root, CHUNK, [(0, 0), (0, 6), (1, 3)])
    torch.manual_seed(0)
    policy = make_policy("act", {**TINY["act"], "image_norm": "per_image"}, read_dataset(root)).eval()
    policy.save_pretrained(tmp_path / "policy")
    again = load_policy(tmp_path / "policy")
    assert again.config.image_norm == "per_image" and again.preprocessor.image.norm == "per_image"
    assert_reloaded_and_onnx_match(policy, again, raw, tmp_path / "policy.onnx")
