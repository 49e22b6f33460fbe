"""`twin eval`: trained policies played in closed loop in the simulated scene.

The must-show: a tiny ACT and a tiny flow policy overfit two push demonstrations that the real recorder made
(Newton worlds, splat-composited 32 px cameras) and, evaluated on the same seeds, push the cube into the zone.
(Push, not reach: a reach target is neither rendered nor in the state, so no visuomotor policy can tell two reach
episodes apart; their first observations are identical.) Also: the same seed gives bit-identical episodes
whatever the number of worlds or Ray workers, the ONNX runtime replays like PyTorch, failure videos, the Wilson
interval, the styles, closed-loop restyling against the recorder's, and one-line errors.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support.policy_data import overfit_batch
from support.small_bundle import make_bundle

from policies import (
    EvalStyle,
    FrameRestyler,
    PolicyEvalConfig,
    RecordConfig,
    Restyler,
    action_chunks,
    check_eval,
    episode_style,
    make_policy,
    parse_styles,
    read_dataset,
    run_eval,
    run_record,
    wilson_interval,
)
from twin_kit import InputError, torch_threads

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
CHUNK = 8
COMMON = dict(chunk_size=CHUNK, n_action_steps=4, image_size=32, backbone_width=0.25, dim=32, heads=2, ff_dim=64,
              dropout=0.0)
TINY = {"act": {**COMMON, "n_encoder_layers": 1, "n_vae_encoder_layers": 1, "latent_dim": 8, "use_vae": False},
        "flow": {**COMMON, "n_layers": 2, "num_steps": 5}}
STEPS = {"act": 1000, "flow": 2000}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The small splat bundle and two push demonstrations recorded in it (32 px front and wrist cameras)."""
    d = tmp_path_factory.mktemp("eval")
    make_bundle(d / "scene")
    cfg = RecordConfig(bundle=str(d / "scene"), out=str(d / "demos"), task="push", episodes=2, worlds=2, size=32)
    assert run_record(cfg) == 0
    return d


def all_frames(root: Path) -> dict[str, torch.Tensor]:
    """Every frame of the dataset as one training batch: state, camera frames, action chunks and padding."""
    ds = read_dataset(root)
    cols: dict[str, list] = {}
    for e in range(ds.total_episodes):
        f = ds.episode_frames(e)
        chunks, pad = action_chunks(f["action"], CHUNK)
        ep = {"observation.state": f["observation.state"], "action": chunks, "action_is_pad": pad}
        ep.update({k: ds.episode_video(e, k) for k in ds.spec.video_keys})
        for k, v in ep.items():
            cols.setdefault(k, []).append(v)
    return {k: torch.as_tensor(np.concatenate(v)) for k, v in cols.items()}


def overfit(kind: str, root: Path, out: Path) -> tuple[float, float]:
    """Train a tiny policy on every frame of the demos (full batch, AdamW, linear decay); save it to `out`.
    Returns its loss before and after, both on one fixed draw (flow: noise and times; ACT: no latent)."""
    with torch_threads(2):   # the module's only work while it runs: both cores
        torch.manual_seed(0)
        policy = make_policy(kind, TINY[kind], read_dataset(root))
        batch = policy.preprocessor(all_frames(root))
        n = len(batch["action"])
        draws = None
        if kind == "flow":
            draws = [{"noise": torch.randn_like(batch["action"]), "tau": policy.sample_time(n, "cpu")}]
        before, after = overfit_batch(policy, batch, STEPS[kind], draws)
    policy.eval().save_pretrained(out / "policy")
    return before, after


@pytest.fixture(scope="module")
def runs(work) -> dict[str, tuple[Path, float, float]]:
    out = {}
    for kind in ("act", "flow"):
        run = work / "runs" / kind
        out[kind] = (run, *overfit(kind, work / "demos", run))
        (run / "run.json").write_text(json.dumps({"datasets": [str(work / "demos")]}))  # as twin train notes them
    return out


def evaluate(run: Path, work: Path, **kw) -> dict:
    """run_eval in this process; the run's results.json (the --json summary plus every episode's result)."""
    kw = {"episodes": 2, "worlds": 2, "styles": "vanilla", "max_videos": 0, **kw}
    cfg = PolicyEvalConfig(run=str(run), bundle=str(work / "scene"), task="push", **kw)
    assert run_eval(cfg) == 0
    out = Path(cfg.videos) if cfg.videos else run / "eval" / "push"
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def act_eval(runs, work) -> dict:
    """The ACT on seeds 0 and 1 in the capture's appearance and in held-out camera effects, 2 worlds."""
    return evaluate(runs["act"][0], work, styles="vanilla,camera")


def test_tiny_act_overfits_two_demos_and_replays_them(runs, act_eval):
    _, before, after = runs["act"]
    assert after < before / 10, (before, after)
    assert act_eval["success"]["vanilla"] == 1.0 and act_eval["successes"]["vanilla"] == 2
    assert act_eval["policy"] == "act" and act_eval["execution"] == "ensemble" and act_eval["robot"] == "franka"
    eps = [e for e in act_eval["episode_results"] if e["style"] == "vanilla"]
    assert [e["seed"] for e in eps] == [0, 1] and all(e["style_id"] == "vanilla" for e in eps)
    assert act_eval["env_steps_per_s"] > 0 and act_eval["episodes_per_s"] > 0


def test_tiny_flow_policy_overfits_two_demos_and_replays_them(runs, work):
    run, before, after = runs["flow"]
    assert after < before / 10, (before, after)
    res = evaluate(run, work, execution="rtc")  # each chunk spliced onto the rest of the last one
    assert res["success"] == {"vanilla": 1.0} and res["execution"] == "rtc"


def test_same_seed_same_episodes_whatever_the_worlds_and_workers(runs, work, act_eval):
    """Per-episode inference: every episode's joint targets (their SHA-1) equal across 2 worlds, 1 world and two
    Ray workers (a local instance), restyled episodes included."""
    def episodes(res):
        return [{k: e[k] for k in ("style", "episode", "seed", "success", "steps", "frames", "style_id", "digest")}
                for e in res["episode_results"]]

    camera = [e for e in act_eval["episode_results"] if e["style"] == "camera"]
    assert all(e["style_id"].startswith("held_out-") for e in camera)
    assert len({e["digest"] for e in act_eval["episode_results"]}) == 4  # a style changes what the policy does
    one = evaluate(runs["act"][0], work, styles="vanilla,camera", worlds=1, videos=str(work / "one_world"))
    assert episodes(one) == episodes(act_eval) and one["success"] == act_eval["success"]
    ray = evaluate(runs["act"][0], work, styles="vanilla,camera", workers=2, videos=str(work / "ray"))
    assert episodes(ray) == episodes(act_eval) and ray["intervals"] == act_eval["intervals"]


def test_onnx_runtime_replays_like_pytorch(runs, work):
    import onnx

    run = runs["act"][0]
    res = evaluate(run, work, runtime="onnx", videos=str(work / "onnx"), success_videos=1)  # exported on the fly
    assert res["runtime"] == "onnx" and res["success"] == {"vanilla": 1.0}
    assert res["videos"] == [str(work / "onnx" / "vanilla_episode0000_success.mp4")]  # the first success filmed
    # an export made from other weights is refused (the metadata names the weights it came from)
    meta = {"twin.format": "twin-policy-onnx", "twin.version": "1", "twin.type": "act", "twin.config": "{}",
            "twin.features": "{}", "twin.inputs": "[]", "twin.weights_sha256": "0" * 64}
    node = onnx.helper.make_node("Identity", ["x"], ["action"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "g", [value("x", onnx.TensorProto.FLOAT, [1])],
                                   [value("action", onnx.TensorProto.FLOAT, [1])])
    model = onnx.helper.make_model(graph)
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(work / "stale.onnx"))
    cfg = PolicyEvalConfig(run=str(run), bundle=str(work / "scene"), task="push", runtime="onnx",
                           onnx=str(work / "stale.onnx"))
    with pytest.raises(InputError, match="exported from other weights"):
        check_eval(cfg)


def test_failure_videos_show_the_policy_cameras_and_a_front_view(runs, work):
    """Half-second episodes: every one fails; one video per style is kept, the lowest episode number."""
    import av

    out = work / "videos"
    res = evaluate(runs["flow"][0], work, styles="vanilla,light_colour", episodes=3, episode_s=0.5, max_videos=1,
                   execution="rtc", rtc_delay=1, videos=str(out))
    assert res["success"] == {"vanilla": 0.0, "light_colour": 0.0} and res["failed_seeds"]["vanilla"] == [0, 1, 2]
    assert sorted(p.name for p in out.iterdir()) == ["light_colour_episode0000.mp4", "results.json",
                                                     "vanilla_episode0000.mp4"]
    assert res["videos"] == [str(out / "vanilla_episode0000.mp4"), str(out / "light_colour_episode0000.mp4")]
    frames = {e["style"]: e["frames"] for e in res["episode_results"] if e["episode"] == 0}
    with av.open(str(out / "light_colour_episode0000.mp4")) as c:
        video = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(video) == frames["light_colour"] == 5
    assert video[0].shape == (192, 3 * 192, 3)  # front and wrist (restyled) and the front view, 32 px x 6
    left, right = video[0][:, :192].astype(float), video[0][:, 384:].astype(float)
    assert np.abs(left - right).mean() > 2  # the policy's front view is restyled, the plain one is not


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


def test_bad_inputs_are_one_line_errors(runs, work):
    run = str(runs["act"][0])

    def cfg(**kw):
        return PolicyEvalConfig(**{"run": run, "bundle": str(work / "scene"), "task": "push", **kw})

    cases = [(cfg(run=str(work / "missing")), "no such run or policy folder"),
             (cfg(run=str(work / "scene")), "neither a run folder"),
             (cfg(robot="so101"), "trained on franka data"),
             (cfg(task="pick_place"), "trained on demonstrations of 'push the cube into the target zone'"),
             (cfg(bundle=str(work / "nowhere")), "no such scene bundle"),
             (cfg(styles="vanilla,sunset"), "unknown style 'sunset'"),
             (cfg(execution="rtc"), "needs a flow policy"),
             (cfg(control_dt=0.03), "does not divide the control rate"),
             (cfg(runtime="onnx", onnx=str(work / "none.onnx")), "no such file"),
             (cfg(videos=str(work / "scene")), "not an evaluation folder")]
    for c, msg in cases:
        with pytest.raises(InputError, match=msg):
            check_eval(c)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([PYTHON, "-m", "twin_cli", "eval", run, "--bundle", str(work / "scene"), "--task", "push",
                        "--robot", "so101"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2 and len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr
