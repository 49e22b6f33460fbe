"""Training-time frame augmentation (policies.train.augment): shifts move the picture by whole pixels within the
bound and repeat the border, colour jitter and random convolutions keep the picture's layout and change its
colours, sensor effects blur, noise and white-balance each frame within their bounds, the same seed draws the
same augmentation, and --augment refuses unknown kinds in one line."""
from __future__ import annotations

import pytest
import torch

from policies.train.augment import Augment, augment_batch, color_jitter, random_conv, random_shift, sensor_effects
from policies.train.config import TrainConfig
from twin_kit import InputError


def marker_frames(n: int, side: int = 50) -> torch.Tensor:
    """n grey frames, each with one white pixel at the centre."""
    x = torch.full((n, side, side, 3), 100, dtype=torch.uint8)
    x[:, side // 2, side // 2] = 255
    return x


def test_shift_moves_each_frame_by_whole_pixels_within_the_bound():
    torch.manual_seed(0)
    frames = marker_frames(64)
    out = random_shift(frames, 0.1)  # up to 5 px on a 50 px frame
    assert out.shape == frames.shape and out.dtype == torch.uint8
    moves = set()
    for f in out:
        ys, xs = torch.nonzero(f[..., 0] == 255, as_tuple=True)
        assert len(ys) == 1  # the marker is moved, never smeared or lost
        dy, dx = int(ys[0]) - 25, int(xs[0]) - 25
        assert abs(dy) <= 5 and abs(dx) <= 5
        moves.add((dy, dx))
        assert (f[..., 0] == 100).sum() == 50 * 50 - 1  # the uncovered edge repeats the border (grey)
    assert len(moves) > 20  # offsets differ from frame to frame


def test_color_jitter_keeps_the_layout_and_changes_the_colours():
    torch.manual_seed(0)
    ramp = torch.linspace(20, 230, 40).round().to(torch.uint8)
    frames = torch.stack([ramp[None, :].expand(40, 40), ramp[:, None].expand(40, 40),
                          torch.full((40, 40), 90, dtype=torch.uint8)], dim=-1)[None].repeat(8, 1, 1, 1)
    out = color_jitter(frames, Augment(kinds=("color",)))
    assert out.shape == frames.shape and out.dtype == torch.uint8
    changed = (out.float() - frames.float()).abs().mean(dim=(1, 2, 3))
    assert (changed > 1).all()  # every frame recoloured
    red = out[..., 0].float()
    assert (red[:, :, 1:] >= red[:, :, :-1] - 1).float().mean() > 0.95  # the red ramp still rises left to right
    same = color_jitter(frames, Augment(kinds=("color",), brightness=0, contrast=0, saturation=0, hue=0))
    assert torch.equal(same, frames)  # zero ranges: the identity


def test_random_conv_recolours_half_the_frames_and_keeps_their_shapes():
    torch.manual_seed(0)
    frames = torch.full((64, 32, 32, 3), 40, dtype=torch.uint8)
    frames[:, 8:24, 8:24] = torch.tensor([200, 30, 30], dtype=torch.uint8)  # a red square on dark grey
    out = random_conv(frames, Augment(kinds=("randconv",)))
    assert out.shape == frames.shape and out.dtype == torch.uint8
    changed = (out.float() - frames.float()).abs().amax(dim=(1, 2, 3)) > 2
    assert 16 < int(changed.sum()) < 48  # about half the frames, the rest untouched
    assert torch.equal(out[~changed], frames[~changed])
    for f in out[changed]:
        inside, outside = f[12:20, 12:20].float().mean((0, 1)), f[:4, :4].float().mean((0, 1))
        assert (inside - outside).abs().max() > 5  # the square still stands out from the background
        assert torch.equal(f[0, 0], f[3, 3]) and torch.equal(f[14, 14], f[16, 16])  # flat regions stay flat
    assert torch.equal(random_conv(frames, Augment(kinds=("randconv",), randconv_probability=0.0)), frames)


def test_sensor_blur_softens_edges_and_keeps_flat_regions():
    torch.manual_seed(0)
    frames = torch.full((32, 40, 40, 3), 40, dtype=torch.uint8)
    frames[:, :, 20:] = 200  # a vertical step edge
    out = sensor_effects(frames, Augment(kinds=("sensor",), sensor_probability=1.0, noise_std=0.0, wb_gain=1.0))
    assert out.shape == frames.shape and out.dtype == torch.uint8
    step = (out[:, 20, 20, 1].float() - out[:, 20, 19, 1].float())  # the jump across the edge, 160 when sharp
    assert (step < 160).float().mean() > 0.8 and (step > 0).all()  # softened, never reversed
    assert torch.equal(out[:, :, :5], frames[:, :, :5]) and torch.equal(out[:, :, -5:], frames[:, :, -5:])
    assert (out.float().mean() - frames.float().mean()).abs() < 1  # blurring moves no light


def test_sensor_noise_and_white_balance_stay_within_their_bounds():
    torch.manual_seed(0)
    grey = torch.full((64, 24, 24, 3), 128, dtype=torch.uint8)
    noisy = sensor_effects(grey, Augment(kinds=("sensor",), sensor_probability=1.0, blur_px=0.0, wb_gain=1.0))
    spread = noisy.float().std(dim=(1, 2, 3))
    assert (spread <= 0.05 * 255 * 1.15).all() and (spread > 0.5).float().mean() > 0.9
    assert (noisy.float().mean(dim=(1, 2, 3)) - 128).abs().max() < 2  # zero-mean noise
    balanced = sensor_effects(grey, Augment(kinds=("sensor",), sensor_probability=1.0, blur_px=0.0,
                                            noise_std=0.0, wb_gain=1.25)).float()
    assert (balanced[..., 1] == 128).all()  # green is the reference
    gains = balanced[:, 0, 0, [0, 2]] / 128
    assert (gains >= 1 / 1.25 - 0.01).all() and (gains <= 1.25 + 0.01).all()
    assert ((gains - 1).abs() > 0.05).float().mean() > 0.5  # most frames visibly off-white
    default = sensor_effects(grey, Augment(kinds=("sensor",)))
    untouched = (default == grey).flatten(1).all(dim=1)
    assert 0 < int(untouched.sum()) < 32  # each part on about half the frames: some draw none of the three
    never = Augment(kinds=("sensor",), sensor_probability=0.0)
    assert torch.equal(sensor_effects(grey, never), grey)


def test_same_seed_same_augmentation_and_state_untouched():
    batch = {"observation.images.front": marker_frames(4), "observation.state": torch.zeros(4, 3)}
    aug = Augment(kinds=("shift", "color", "randconv", "sensor"))
    torch.manual_seed(5)
    a = augment_batch(batch, aug)
    torch.manual_seed(5)
    b = augment_batch(batch, aug)
    assert torch.equal(a["observation.images.front"], b["observation.images.front"])
    assert a["observation.state"] is batch["observation.state"]
    assert augment_batch(batch, Augment()) is batch  # none: nothing touched


@pytest.mark.parametrize("bad", ["blur", "shift,shift", "shift,blur"])
def test_unknown_augmentation_is_refused(bad):
    with pytest.raises(InputError, match="--augment"):
        TrainConfig(dataset=["d"], out="o", augment=bad)
    assert TrainConfig(dataset=["d"], out="o", augment="Shift, color").augmentation() == ("shift", "color")
    assert TrainConfig(dataset=["d"], out="o", augment="randconv").augmentation() == ("randconv",)
    assert TrainConfig(dataset=["d"], out="o", augment="shift,sensor").augmentation() == ("shift", "sensor")
