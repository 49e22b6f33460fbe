"""`twin eval`: trained policies played in closed loop in the simulated scene.

The must-show (ACT half; the flow half is test_eval_flow.py): a tiny ACT overfits two push demonstrations that the
real recorder made (Newton worlds, splat-composited 32 px cameras) and, evaluated on the same seeds, pushes the
cube into the zone. (Push, not reach: a reach target is neither rendered nor in the state, so no visuomotor policy
can tell two reach episodes apart; their first observations are identical.) Also: the same seed gives
bit-identical episodes whatever the number of worlds or Ray workers, the ONNX runtime replays like PyTorch, the
Wilson interval, the styles, closed-loop restyling against the recorder's, and one-line errors.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support.eval_work import evaluate, fit_run

from policies import (
    EvalStyle,
    FrameRestyler,
    PolicyEvalConfig,
    Restyler,
    check_eval,
    episode_style,
    parse_styles,
    wilson_interval,
)
from twin_kit import InputError

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


@pytest.fixture(scope="module")
def act_run(eval_dir) -> tuple[Path, float, float]:
    return fit_run("act", eval_dir)


@pytest.fixture(scope="module")
def act_eval(act_run, eval_dir) -> dict:
    """The ACT on seeds 0 and 1 in the capture's appearance and in held-out camera effects, 2 worlds."""
    return evaluate(act_run[0], eval_dir, styles="vanilla,camera")


def test_tiny_act_overfits_two_demos_and_replays_them(act_run, act_eval):
    _, before, after = act_run
    assert after < before / 10, (before, after)
    assert act_eval["success"]["vanilla"] == 1.0 and act_eval["successes"]["vanilla"] == 2
    assert act_eval["policy"] == "act" and act_eval["execution"] == "ensemble" and act_eval["robot"] == "franka"
    eps = [e for e in act_eval["episode_results"] if e["style"] == "vanilla"]
    assert [e["seed"] for e in eps] == [0, 1] and all(e["style_id"] == "vanilla" for e in eps)
    assert act_eval["env_steps_per_s"] > 0 and act_eval["episodes_per_s"] > 0


def test_same_seed_same_episodes_whatever_the_worlds_and_workers(act_run, eval_dir, act_eval):
    """Per-episode inference: every episode's joint targets (their SHA-1) equal across 2 worlds, 1 world and two
    Ray workers (a local instance), restyled episodes included."""
    def episodes(res):
        return [{k: e[k] for k in ("style", "episode", "seed", "success", "steps", "frames", "style_id", "digest")}
                for e in res["episode_results"]]

    camera = [e for e in act_eval["episode_results"] if e["style"] == "camera"]
    assert all(e["style_id"].startswith("held_out-") for e in camera)
    assert len({e["digest"] for e in act_eval["episode_results"]}) == 4  # a style changes what the policy does
    one = evaluate(act_run[0], eval_dir, styles="vanilla,camera", worlds=1, videos=str(eval_dir / "one_world"))
    assert episodes(one) == episodes(act_eval) and one["success"] == act_eval["success"]
    ray = evaluate(act_run[0], eval_dir, styles="vanilla,camera", workers=2, videos=str(eval_dir / "ray"))
    assert episodes(ray) == episodes(act_eval) and ray["intervals"] == act_eval["intervals"]


def test_onnx_runtime_replays_like_pytorch(act_run, eval_dir):
    import onnx

    run = act_run[0]
    # exported on the fly
    res = evaluate(run, eval_dir, runtime="onnx", videos=str(eval_dir / "onnx"), success_videos=1)
    assert res["runtime"] == "onnx" and res["success"] == {"vanilla": 1.0}
    assert res["videos"] == [str(eval_dir / "onnx" / "vanilla_episode0000_success.mp4")]  # the first success filmed
    # an export made from other weights is refused (the metadata names the weights it came from)
    meta = {"twin.format": "twin-policy-onnx", "twin.version": "1", "twin.type": "act", "twin.config": "{}",
            "twin.features": "{}", "twin.inputs": "[]", "twin.weights_sha256": "0" * 64}
    node = onnx.helper.make_node("Identity", ["x"], ["action"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "g", [value("x", onnx.TensorProto.FLOAT, [1])],
                                   [value("action", onnx.TensorProto.FLOAT, [1])])
    model = onnx.helper.make_model(graph)
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(eval_dir / "stale.onnx"))
    cfg = PolicyEvalConfig(run=str(run), bundle=str(eval_dir / "scene"), task="push", runtime="onnx",
                           onnx=str(eval_dir / "stale.onnx"))
    with pytest.raises(InputError, match="exported from other weights"):
        check_eval(cfg)


def test_torch_runtime_runs_convolutions_channels_last_with_the_same_actions(act_run):
    """On the CPU, TorchRuntime lays the policy's convolution weights out channels-last (oneDNN's fast layout);
    its action chunks are the contiguous-layout policy's."""
    from policies.evaluate.runtime import TorchRuntime
    from policies.pretrained import load_policy

    policy = load_policy(act_run[0] / "policy")
    feats = policy.features
    rng = np.random.default_rng(0)
    obs = {"observation.state": rng.normal(size=(3, feats.state_dim)).astype(np.float32)}
    for k, (h, w) in feats.cameras.items():
        obs[k] = rng.integers(0, 256, size=(3, h, w, 3), dtype=np.uint8)
    with torch.no_grad():
        plain = policy.infer({k: torch.from_numpy(v) for k, v in obs.items()}).numpy()
    rt = TorchRuntime(policy)
    convs = [m for m in policy.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    np.testing.assert_allclose(rt.chunks(obs), plain, rtol=1e-5, atol=1e-5)


def test_wilson_interval_against_hand_computed_values():
    # (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.96: e.g. 7/10 -> (0.3968, 0.8922)
    cases = {(7, 10): (0.3968, 0.8922), (0, 10): (0.0, 0.2775), (10, 10): (0.7225, 1.0),
             (50, 100): (0.4038, 0.5962), (1, 2): (0.0945, 0.9055)}
    for (k, n), want in cases.items():
        assert wilson_interval(k, n) == pytest.approx(want, abs=1e-4), (k, n)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_styles_and_each_episodes_appearance():
    from policies.evaluate.styles import episode_appearance
    from policies.restyle import STYLE_FAMILIES

    styles = parse_styles("vanilla,held_out")
    assert [s.name for s in styles] == ["vanilla", *STYLE_FAMILIES] and styles[0].vanilla
    assert parse_styles(" camera,vanilla,camera ") == [EvalStyle("camera", "camera"), EvalStyle("vanilla")]
    with pytest.raises(InputError, match="unknown style 'sunset'"):
        parse_styles("vanilla,sunset")
    look = episode_appearance(EvalStyle("camera", "camera"), 5)
    assert look.families == ("camera",) and look.split == "held_out"
    assert look == episode_appearance(EvalStyle("camera", "camera"), 5) == episode_style(5, "procedural",
                                                                                         "held_out", ("camera",))
    assert look.camera == episode_style(5, "procedural", "held_out").camera  # the family's own stream
    assert episode_appearance(EvalStyle("vanilla"), 5).is_vanilla
    # the train split, one family at a time: the values a restyled policy learnt from, same family stream
    trained = parse_styles("train,train_camera,camera")
    assert [s.name for s in trained] == [f"train_{f}" for f in STYLE_FAMILIES] + ["camera"]
    assert trained[0] == EvalStyle("train_" + STYLE_FAMILIES[0], STYLE_FAMILIES[0], "train")
    seen = episode_appearance(EvalStyle("train_camera", "camera", "train"), 5)
    assert seen.families == ("camera",) and seen.split == "train" and seen.camera != look.camera
    assert seen == episode_style(5, "procedural", "train", ("camera",))
    with pytest.raises(InputError, match="unknown style 'train_sunset'"):
        parse_styles("train_sunset")


def test_held_out_mean_leaves_train_split_rows_out():
    from types import SimpleNamespace

    from policies.evaluate.rollout import EpisodeResult
    from policies.evaluate.run import summarise

    styles = parse_styles("vanilla,camera,background,train_camera")
    wins = {"vanilla": (1, 1), "camera": (1, 0), "background": (0, 0), "train_camera": (1, 1)}
    results = [EpisodeResult(name, k, 7 + k, bool(won), 10, 5, name, "") for name, pair in wins.items()
               for k, won in enumerate(pair)]
    cfg = SimpleNamespace(episodes=2, runtime="torch", execution="chunk", task="push", worlds=1, seed=7)
    spec = {"policy": SimpleNamespace(name="act", config=None), "robot": "franka", "out": None}
    got = summarise(cfg, styles, results, spec, 1.0, 1.0, 0.0)
    assert got["success"] == {"vanilla": 1.0, "camera": 0.5, "background": 0.0, "train_camera": 1.0}
    assert got["held_out_success"] == 0.25 and got["train_split_success"] == 1.0
    assert got["failed_seeds"]["camera"] == [8]


def test_closed_loop_restyling_is_the_recorders():
    """Frame by frame, the recorder's procedural restyle: exact for a fixed camera (distractors and per-frame
    noise included). A moving camera takes its luminance references and the table texture's filter footprint
    from its first frame rather than from the whole episode: exact but for the table texture, close there."""
    from support.restyle_scene import TABLE_Z, episode, intrinsics, look_at, side_view

    from policies.restyle import STYLE_FAMILIES

    K = intrinsics(48, 48, 45.0)
    moving = [look_at(np.array([1.1 + 0.05 * i, -0.9 + 0.04 * i, 1.45]), np.array([0.0, 0.0, TABLE_Z]))
              for i in range(4)]
    for poses, mounted in (([side_view()] * 4, False), (moving, True)):
        rgb, maps = episode(poses, K, 48, 48)
        maps.pop("normal")  # the sensors give none: the restyler derives normals from depth, as when recording
        rgb = (rgb * 255 + 0.5).to(torch.uint8).numpy()
        w2c = maps["world_to_cam"].numpy()
        for family in STYLE_FAMILIES:
            style = episode_style(3, "procedural", "held_out", (family,))
            want = Restyler("procedural").apply(rgb, maps, style, first_camera=True)
            fr = FrameRestyler(style, K, TABLE_Z, moving=mounted, first_camera=True)
            got = np.stack([fr(rgb[t], maps["depth"][t], maps["seg"][t], w2c[t]) for t in range(4)])
            err = np.abs(got.astype(int) - want)
            if mounted and family == "table_texture":
                assert err.mean() < 1.0, family
            else:
                assert err.max() == 0, (family, mounted)
            assert np.abs(got.astype(int) - rgb).max() > 20, family  # restyled at all


def test_bad_inputs_are_one_line_errors(act_run, eval_dir):
    run = str(act_run[0])

    def cfg(**kw):
        return PolicyEvalConfig(**{"run": run, "bundle": str(eval_dir / "scene"), "task": "push", **kw})

    cases = [(cfg(run=str(eval_dir / "missing")), "no such run or policy folder"),
             (cfg(run=str(eval_dir / "scene")), "neither a run folder"),
             (cfg(robot="so101"), "trained on franka data"),
             (cfg(task="pick_place"), "trained on demonstrations of 'push the cube into the target zone'"),
             (cfg(bundle=str(eval_dir / "nowhere")), "no such scene bundle"),
             (cfg(styles="vanilla,sunset"), "unknown style 'sunset'"),
             (cfg(execution="rtc"), "needs a flow policy"),
             (cfg(control_dt=0.03), "does not divide the control rate"),
             (cfg(runtime="onnx", onnx=str(eval_dir / "none.onnx")), "no such file"),
             (cfg(videos=str(eval_dir / "scene")), "not an evaluation folder")]
    for c, msg in cases:
        with pytest.raises(InputError, match=msg):
            check_eval(c)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([PYTHON, "-m", "twin_cli", "eval", run, "--bundle", str(eval_dir / "scene"), "--task", "push",
                        "--robot", "so101"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2 and len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr
