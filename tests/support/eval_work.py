"""Two push demonstrations recorded in the small splat bundle, the tiny ACT and flow policies `twin eval`'s tests
overfit on them, and an in-process evaluation: shared by tests/policies/test_eval.py (ACT) and
test_eval_flow.py (flow), which `make test` runs on two workers at once (each fit takes minutes on the CPU)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from policies import PolicyEvalConfig, RecordConfig, action_chunks, make_policy, read_dataset, run_eval, run_record
from support.policy_data import overfit_batch
from support.small_bundle import make_bundle
from twin_kit import torch_threads

CHUNK = 8
# backbone_layers 3: a 2x2 feature map at 32 px; stage 4's 3x3 convolutions on 1x1 maps cost the most per step
COMMON = dict(chunk_size=CHUNK, n_action_steps=4, image_size=32, backbone_width=0.25, backbone_layers=3, dim=32,
              heads=2, ff_dim=64, dropout=0.0)
TINY = {"act": {**COMMON, "n_encoder_layers": 1, "n_vae_encoder_layers": 1, "latent_dim": 8, "use_vae": False},
        "flow": {**COMMON, "n_layers": 2, "num_steps": 5}}
STEPS = {"act": 1000, "flow": 2000}   # 3 stages on AVX2: 600 / 1500 replayed only 1 of the 2 demos (rtc for flow)


def record_demos(d: Path) -> Path:
    """The small splat bundle in `d`/scene and two push demonstrations recorded in it (32 px front and wrist
    cameras) in `d`/demos; returns `d`."""
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


# One thread, however pytest runs: the replay of an overfit policy hangs on the exact optimisation path, and the
# thread count changes it (the tiny flow fit replayed both demos on one thread and one of them on two). `make test`
# runs these fits on two workers, one thread each, anyway.
FIT_THREADS = 1


def overfit(kind: str, root: Path, out: Path) -> tuple[float, float]:
    """Train a tiny policy on every frame of the demos (full batch, AdamW, linear decay); save it to `out`.
    Returns its loss before and after, both on one fixed draw (flow: noise and times; ACT: no latent)."""
    with torch_threads(FIT_THREADS):
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


def fit_run(kind: str, work: Path) -> tuple[Path, float, float]:
    """Overfit a tiny `kind` policy on `work`/demos into `work`/runs/`kind`, noted as `twin train` notes its
    datasets; returns the run folder and the loss before and after."""
    run = work / "runs" / kind
    before, after = overfit(kind, work / "demos", run)
    (run / "run.json").write_text(json.dumps({"datasets": [str(work / "demos")]}))
    return run, before, after


def evaluate(run: Path, work: Path, **kw) -> dict:
    """run_eval in this process; the run's results.json (the --json summary plus every episode's result)."""
    kw = {"episodes": 2, "worlds": 2, "styles": "vanilla", "max_videos": 0, **kw}
    cfg = PolicyEvalConfig(run=str(run), bundle=str(work / "scene"), task="push", **kw)
    assert run_eval(cfg) == 0
    out = Path(cfg.videos) if cfg.videos else run / "eval" / "push"
    return json.loads((out / "results.json").read_text())
