"""Experiment: does restyling make a policy trained in the twin survive a change of appearance?

    python benches/sim2real.py --json [--headline] [--parallel] [--scene twins/demo] [--work benches/work/sim2real]

In the metric synthetic twin (`twin demo`'s capture, with its splats) and the Franka, per task (`push`,
`pick_place`), the same `twin` verbs a user runs:
- A (plain): ACT trained on --demos expert demonstrations in the capture's own appearance.
- B (restyled): ACT trained on A's demonstrations plus every one of them restyled with the *train_wide* style
  splits (--b-split, the default; `twin train V R --mix 1,1`; --b-data superset, the default), or with --b-data
  split on --demos demonstrations, the first half vanilla and the second half restyled.
- Both evaluated with `twin eval` on `vanilla` and on every held-out style family, --eval-episodes per style,
  from seeds disjoint from the training ones (--eval-seed), so A and B meet the same initial states.
- Without --headline, also the flow-matching policy, plain and restyled, on --flow-task; A and B of the headline
  task evaluated in a second capture (--other-scene, the bird scan); and the G1's one-arm reach policy (ACT on
  the head camera, the goal in observation.state), which `twin deploy` sends to the simulated humanoid.
  `--only g1`, `--only other_scene` or `--only flow` runs one of those alone (--flow-steps: the flow arms' steps);
  `--ab-only` runs A and B of every --tasks task and nothing else.
Both arms train with the same recipe (--policy-config: ImageNet MobileNetV2 with blocks 7-13 fine-tuned; --augment
shift by default: random shifts, the same for A and B, and no appearance augmentation that would blur what
restyling adds; the auxiliary object head of ACT and flow, which learns from the privileged poses both datasets
record), so the data is the only difference; B's restyled demos each vary --style-count families (default 3 of
8, chosen per episode), and B holds each of A's demos restyled twice (--b-copies 2). --parallel trains and
evaluates the arms side by side, one process each; without it, with --threads 2, the arms run one after the
other, each training faster (the default recipe's --headline: 66 min, plus 3-10 min of recording when --work
has no datasets yet).
Data: V100 = vanilla seeds 0..N/2-1; V = V100 appended with seeds N/2..N-1 (A's data). With --b-data superset, B
trains on V + all N seeds restyled (1:1, the X-Mobility recipe): B then holds every frame A does, so B - A
measures what adding restyled copies is worth. With --b-data split, B trains on V100 + seeds N/2..N-1 restyled.
--b-copies N (default 2) restyles each of those seeds N times, in N styles (the same trajectories; still 1:1
with V).
Datasets and trained runs in --work are reused when complete, so an interrupted experiment continues where it
stopped (--fresh starts over).
--b-split train_wide draws B's restyled demos from the wide train split instead (held-out values between
trained ones rather than past them); its datasets and runs are kept apart. With --train-split, both arms are
also evaluated on each family's train split (plain_/restyled_train_split_success): whether a held-out failure
is the new values or the family itself.
Keys per task: plain_/restyled_ vanilla_success and heldout_success (mean over held-out families), per-family
rates with Wilson intervals, train_seconds, eval_seconds; top level the headline task's (pick_place, or push
with --headline-task push). Goals (issue 10): B >= 0.8 vanilla, B >= 0.7 held-out, B - A >= 0.3 held-out,
each training <= 30 min on 2 cores. The last stdout line is one JSON object (also benches/results/sim2real.json).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from twin_kit import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIRD = Path("twins/bird")  # the default other scene, built from ../shared/data's bird photos when missing
BIRD_PHOTOS = REPO.parent / "shared" / "data" / "bird" / "images"
BIRD_SCALE = 0.3  # metres per unit: its desk 1.7 m across, room for the Franka (at its true 0.057, 32 cm)
GOALS = {"restyled_vanilla_success": 0.8, "restyled_heldout_success": 0.7, "heldout_gain": 0.3,
         "train_minutes": 30.0}


def twin(*args: str, log: Path) -> dict:
    """Run a `twin` verb with --json; its stderr goes to `log`; returns the JSON of its last stdout line."""
    cmd = [sys.executable, "-m", "twin_cli", *args, "--json"]
    print("$ twin " + " ".join(args), file=sys.stderr, flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as err:
        err.write("$ twin " + " ".join(args) + "\n")
        err.flush()
        r = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    res = json.loads(lines[-1]) if lines else {}
    if r.returncode != 0:
        raise SystemExit(f"twin {args[0]} failed ({r.returncode}): {res.get('error', 'see ' + str(log))}")
    return res


def wide_tag(a) -> str:
    """The suffix that keeps B's train_wide datasets and runs apart from the train split's."""
    return "_wide" if a.b_split == "train_wide" else ""


def episodes_in(dataset: Path) -> int:
    """Episodes a finished dataset holds (0 when it is missing)."""
    info = dataset / "meta" / "info.json"
    return int(json.loads(info.read_text())["total_episodes"]) if info.exists() else 0


def record(a, task: str, out: Path, episodes: int, seed: int, restyle: str, log: Path, append_to: Path | None = None,
           robot: str | None = None, cameras: str | None = None, variant: int = 0) -> dict:
    """One dataset of `episodes` expert demonstrations from `seed` on (reused when already complete); `variant`:
    which of the episodes' styles a restyled one draws (twin record --style-variant)."""
    want = episodes + (episodes_in(append_to) if append_to else 0)
    if episodes_in(out) == want:
        return {"reused": True, "episodes": want}
    if out.exists():
        shutil.rmtree(out)
    common = ["--task", task, "--robot", robot or a.robot, "--cameras", cameras or a.cameras, "--size", str(a.size),
              "--worlds", str(a.worlds), "--restyle", restyle]
    if restyle != "none":
        common += ["--style-split", a.b_split] + (["--style-count", str(a.style_count)] if a.style_count else [])
        common += ["--style-variant", str(variant)] if variant else []
    if append_to is not None:
        shutil.copytree(append_to, out)
        return twin("record", a.scene, "--out", str(out), "--episodes", str(episodes), "--append", *common, log=log)
    return twin("record", a.scene, "--out", str(out), "--episodes", str(episodes), "--seed", str(seed), *common,
                log=log)


def policy_config(a, aux: bool) -> str | None:
    """--policy-config, plus the auxiliary object head (--aux-weight) and the consistency loss
    (--consistency-weight) when `aux` (an arm of a task whose datasets record task objects)."""
    fields = json.loads(a.policy_config) if a.policy_config else {}
    if aux and a.aux_weight > 0:
        fields["aux_weight"] = a.aux_weight
    if aux and a.consistency_weight > 0:
        fields["consistency_weight"] = a.consistency_weight
    return json.dumps(fields) if fields else None


def train(a, policy: str, datasets: list[Path], out: Path, log: Path, mix: str | None = None,
          steps: int | None = None, aux: bool = False) -> dict:
    """A policy trained on `datasets` into the run folder `out`; `aux`: with the policy's auxiliary object head.
    A finished run is reused, and an interrupted one resumed, only when it was started with the same recipe (the
    `twin train` arguments but --threads): a run folder's name does not say its policy config or steps."""
    args = ["train", *map(str, datasets), "--policy", policy, "--out", str(out), "--steps", str(steps or a.steps),
            "--batch-size", str(a.batch_size), "--image-size", str(a.image_size), "--seed", str(a.seed),
            "--action-space", a.action_space, "--augment", a.augment, "--precision", a.precision]
    config = policy_config(a, aux)
    if config:
        args += ["--policy-config", config]
    if a.lr:
        args += ["--lr", str(a.lr)]
    if mix:
        args += ["--mix", mix]
    done = out / "bench_train.json"
    recipe = out.with_name(out.name + ".recipe.json")  # beside the run: twin train wants a folder of its own
    same = recipe.exists() and json.loads(recipe.read_text()) == args
    if same and done.exists():
        return {**json.loads(done.read_text()), "reused": True}
    resume = same and any((out / "checkpoints").glob("step_*"))  # an interrupted experiment continues its training
    if not resume and out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(json.dumps(args))
    res = twin(*args, "--threads", str(a.threads), *(["--resume"] if resume else []), log=log)
    done.write_text(json.dumps(res))
    return res


def evaluate(a, task: str, run: Path, log: Path, scene: str | None = None, styles: str = "vanilla,held_out",
             robot: str | None = None, extra: tuple[str, ...] = (), tag: str = "") -> dict:
    """`twin eval` of a run on vanilla and every held-out family (or `styles`), from --eval-seed on; an evaluation
    that finished before (its results.json, same episodes, seed, task and styles, and newer than the policy) is
    reused."""
    from policies import parse_styles

    done = run / "eval" / (task + tag) / "results.json"
    if done.exists() and done.stat().st_mtime > (run / "policy").stat().st_mtime:
        res = json.loads(done.read_text())
        want = (a.eval_episodes, a.eval_seed, task, [s.name for s in parse_styles(styles)])
        if (res.get("episodes"), res.get("seed"), res.get("task"), list(res.get("success", {}))) == want:
            return {**res, "reused": True}
    return twin("eval", str(run), "--bundle", scene or a.scene, "--task", task, "--robot", robot or a.robot,
                "--styles", styles, "--episodes", str(a.eval_episodes), "--seed", str(a.eval_seed), "--worlds",
                str(a.worlds), "--threads", str(a.threads), "--videos", str(run / "eval" / (task + tag)),
                "--success-videos", "1", *extra,
                log=log)


def run_dir(a, task: str, policy: str, name: str) -> Path:
    """The run folder of one arm: runs of either action space, of B's two data designs and of its two train
    splits are kept apart."""
    space = "_delta" if a.action_space == "delta" else ""
    data = "_superset" if name == "restyled" and a.b_data == "superset" else ""
    data += f"_x{a.b_copies}" if name == "restyled" and a.b_copies > 1 else ""
    data += wide_tag(a) if name == "restyled" else ""
    return Path(a.work) / "runs" / f"{task}_{policy}{space}_{name}{data}"


def arm(a, task: str, policy: str, name: str, datasets: list[Path], mix: str | None, log: Path) -> dict:
    """Train and evaluate one arm of the experiment; its figures."""
    steps = a.flow_steps if policy == "flow" and a.flow_steps else None
    tr = train(a, policy, datasets, run_dir(a, task, policy, name), log, mix, steps=steps,
               aux=task != "reach")   # reach demos record no task objects
    ev = evaluate(a, task, Path(tr["run"]), log)
    held = {k: v for k, v in ev["success"].items() if k != "vanilla"}
    seen = {}
    if a.train_split:  # the same families in their train split: what the restyled arm learnt from
        tv = evaluate(a, task, Path(tr["run"]), log, styles="train", tag="_train_split")
        seen = {"train_split_success": tv["train_split_success"], "train_split_per_style": tv["success"],
                "train_split_intervals": tv["intervals"], "train_split_eval_seconds": tv["seconds"]}
    return {"vanilla_success": ev["success"]["vanilla"], "heldout_success": ev["held_out_success"], **seen,
            "per_style": ev["success"], "intervals": ev["intervals"],
            "train_seconds": tr.get("total_seconds", tr["seconds"]), "train_reused": bool(tr.get("reused")),
            "train_resumed_seconds": earlier_seconds(tr),
            "eval_seconds": ev["seconds"], "eval_reused": bool(ev.get("reused")), "parameters": tr["parameters"],
            "steps": tr["steps"],
            "train_loss": tr["train_loss"], "val_loss": tr["val_loss"], "heldout_families": sorted(held),
            "run": tr["run"]}


def task_datasets(a, task: str, log: Path) -> tuple[dict, dict]:
    """V100, V (= V100 + the second half) and R (the second half restyled; with --b-data superset, every seed
    restyled, and with --b-copies N also r_full_1 .. r_full_N-1: the same seeds in other styles); their recording
    summaries."""
    half = a.demos // 2
    d = Path(a.work) / "datasets"
    k = (f"_k{a.style_count}" if a.style_count else "") + wide_tag(a)
    paths = {"v_half": d / f"{task}_vanilla_{half}", "v_full": d / f"{task}_vanilla_{a.demos}",
             "r_half": d / f"{task}_restyled_{half}{k}"}
    recs = {"v_half": record(a, task, paths["v_half"], half, 0, "none", log),
            "v_full": record(a, task, paths["v_full"], a.demos - half, half, "none", log, append_to=paths["v_half"])}
    if a.b_data == "superset":
        paths["r_full"] = d / f"{task}_restyled_{a.demos}{k}"
        recs["r_full"] = record(a, task, paths["r_full"], a.demos, 0, "procedural", log)
        for v in range(1, a.b_copies):
            paths[f"r_full_{v}"] = d / f"{task}_restyled_{a.demos}{k}_v{v}"
            recs[f"r_full_{v}"] = record(a, task, paths[f"r_full_{v}"], a.demos, 0, "procedural", log, variant=v)
    else:
        recs["r_half"] = record(a, task, paths["r_half"], a.demos - half, half, "procedural", log)
    return paths, recs


def run_task(a, task: str, policies: tuple[str, ...] = ("act",)) -> dict:
    log = Path(a.work) / "logs" / f"{task}.log"
    t0 = time.perf_counter()
    paths, recs = task_datasets(a, task, log)
    record_s = time.perf_counter() - t0
    out = {"record_seconds": round(record_s, 1),
           "expert_success": {k: r.get("expert_success") for k, r in recs.items() if not r.get("reused")}}
    for policy in policies:
        if a.b_data == "superset":  # half the samples vanilla, half restyled (spread over the copies)
            b_data = [paths["v_full"], paths["r_full"]] + [paths[f"r_full_{v}"] for v in range(1, a.b_copies)]
            b_mix = ",".join([str(a.b_copies)] + ["1"] * a.b_copies)
        else:
            b_data, b_mix = [paths["v_half"], paths["r_half"]], "1,1"
        arms = {"plain": ([paths["v_full"]], None), "restyled": (b_data, b_mix)}
        if a.parallel:  # one process per arm, side by side (each with --threads), each arm logging apart
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(arms)) as pool:
                futures = {name: pool.submit(arm, a, task, policy, name, data, mix,
                                             log.with_name(f"{log.stem}_{policy}_{name}.log"))
                           for name, (data, mix) in arms.items()}
                plain, restyled = (futures[n].result() for n in arms)
        else:
            plain, restyled = (arm(a, task, policy, name, data, mix, log) for name, (data, mix) in arms.items())
        prefix = "" if policy == "act" else "flow_"
        for name, r in (("plain", plain), ("restyled", restyled)):
            for k in ("vanilla_success", "heldout_success", "train_split_success", "train_seconds", "eval_seconds"):
                if k in r:
                    out[f"{prefix}{name}_{k}"] = r[k]
            out[f"{prefix}{name}_detail"] = r
    return out


def g1_reach(a) -> dict:
    """The G1's one-arm reach policy (ACT, head camera, the goal in observation.state), which the deployment
    issue sends to the simulated humanoid: its demos, training and success in the capture's appearance."""
    log = Path(a.work) / "logs" / "g1_reach.log"
    ds = Path(a.work) / "datasets" / f"reach_g1_{a.demos}"
    t0 = time.perf_counter()
    rec = record(a, "reach", ds, a.demos, 0, "none", log, robot="g1", cameras="head")
    record_s = time.perf_counter() - t0
    tr = train(a, "act", [ds], Path(a.work) / "runs" / "reach_g1_act", log, steps=a.g1_steps)
    ev = evaluate(a, "reach", Path(tr["run"]), log, styles="vanilla", robot="g1")
    return {"success": ev["success"]["vanilla"], "interval": ev["intervals"]["vanilla"],
            "expert_success": rec.get("expert_success"), "record_seconds": round(record_s, 1),
            "train_seconds": tr.get("total_seconds", tr["seconds"]), "train_reused": bool(tr.get("reused")),
            "eval_seconds": ev["seconds"],
            "parameters": tr["parameters"], "steps": a.g1_steps, "run": tr["run"]}


def bird_scene(scene: Path, log: Path) -> None:
    """Build the default other scene, twins/bird, from the bird photos in ../shared/data when it has no splats yet:
    `twin reconstruct` then `twin splat` (the splats take ~7 min alone on 2 cores)."""
    from spatial import BundlePaths

    paths = BundlePaths(scene)
    if paths.splats.exists():
        return
    if scene != BIRD or not BIRD_PHOTOS.is_dir():
        raise SystemExit(f"{scene}: no splats (reconstruct and splat it first, or pass --other-scene)")
    if not paths.cameras.exists():  # a reconstruction already there is kept; a half-written folder is replaced
        twin("reconstruct", str(BIRD_PHOTOS), "--out", str(scene), "--overwrite", log=log)
    twin("splat", str(scene), log=log)


def other_scene(a, task: str) -> dict:
    """A and B of `task`, trained in the demo twin, evaluated in another capture (--other-scene, metres per
    unit --other-scale) in its own appearance: a scene neither policy has seen."""
    log = Path(a.work) / "logs" / f"{task}_other_scene.log"
    scene = Path(a.other_scene)
    bird_scene(scene, log)
    scale = a.other_scale if a.other_scale is not None else BIRD_SCALE if scene == BIRD else None
    out = {"scene": a.other_scene, "scale": scale, "task": task}
    tag = f"_other_scene_{scene.name}" + (f"_{scale:g}m" if scale is not None else "")  # cached per scene and scale
    for name in ("plain", "restyled"):
        run = run_dir(a, task, "act", name)
        if not (run / "bench_train.json").exists():
            raise SystemExit(f"{run}: not trained yet (run the {task} arms first)")
        ev = evaluate(a, task, run, log, scene=a.other_scene, styles="vanilla", tag=tag,
                      extra=("--scale", str(scale)) if scale is not None else ())
        out[f"{name}_success"] = ev["success"]["vanilla"]
        out[f"{name}_interval"] = ev["intervals"]["vanilla"]
        out[f"{name}_eval_seconds"] = ev["seconds"]
    return out


def contact_sheet(video: Path, png: Path, frames: int = 5) -> None:
    """`frames` evenly spaced frames of an evaluation video, stacked top to bottom, as one PNG."""
    import av
    import numpy as np
    from PIL import Image

    with av.open(str(video)) as c:
        all_frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    pick = np.linspace(0, len(all_frames) - 1, frames).round().astype(int)
    Image.fromarray(np.concatenate([all_frames[i] for i in pick])).save(png)


def docs_media(head: dict, task: str, dest: Path) -> dict:
    """The restyled ACT's first filmed success and failure (a held-out style first, else vanilla) copied into
    `dest` as `sim2real_<task>_{success,failure}.mp4` with a PNG contact sheet each; the files written."""
    ev = Path(head["restyled_detail"]["run"]) / "eval" / task
    out = {}
    for kind, pattern in (("success", "*_success.mp4"), ("failure", "*_episode[0-9][0-9][0-9][0-9].mp4")):
        found = sorted(ev.glob(pattern), key=lambda p: (p.name.startswith("vanilla"), p.name))
        if not found:
            continue
        dest.mkdir(parents=True, exist_ok=True)
        mp4 = dest / f"sim2real_{task}_{kind}.mp4"
        shutil.copyfile(found[0], mp4)
        contact_sheet(mp4, mp4.with_suffix(".png"))
        out[kind] = {"video": str(mp4), "from": found[0].name}
    return out


def earlier_seconds(tr: dict) -> float:
    """The training seconds a `twin train` this invocation resumed had spent before (0 when it ran whole here, and
    when it was reused: its train_seconds then count whole)."""
    return round(tr["total_seconds"] - tr["seconds"], 2) if tr.get("resumed_from") and not tr.get("reused") else 0.0


def reused_seconds(per_task: dict) -> float:
    """The measured seconds of the trainings and evaluations this invocation reused from --work rather than ran,
    and of the steps an interrupted training had run before it resumed: added to its own wall time, what a run
    without them takes (recordings aside)."""
    arms = [r for t in per_task.values() for k, r in t.items() if k.endswith("_detail")]
    return round(sum(r["train_seconds"] for r in arms if r["train_reused"])
                 + sum(r["train_resumed_seconds"] for r in arms)
                 + sum(r["eval_seconds"] for r in arms if r["eval_reused"]), 1)


def goals(res: dict) -> dict:
    gain = res["restyled_heldout_success"] - res["plain_heldout_success"]
    slowest = max(res["plain_train_seconds"], res["restyled_train_seconds"]) / 60
    return {"heldout_gain": round(gain, 4),
            "meets": {**{k: res[k] >= GOALS[k] for k in ("restyled_vanilla_success", "restyled_heldout_success")},
                      "heldout_gain": gain >= GOALS["heldout_gain"],
                      "train_minutes": slowest <= GOALS["train_minutes"]}}


def settings(a) -> dict:
    """The options a result was made with."""
    return {k: getattr(a, k) for k in ("scene", "robot", "demos", "eval_episodes", "eval_seed", "cameras", "size",
                                       "image_size", "steps", "flow_steps", "batch_size", "action_space", "augment",
                                       "precision", "policy_config", "aux_weight", "consistency_weight", "lr",
                                       "style_count", "b_data", "b_copies", "b_split", "train_split", "parallel",
                                       "worlds", "threads", "seed", "headline", "ab_only", "g1_steps", "other_scene",
                                       "other_scale", "only")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scene", default="twins/demo")
    p.add_argument("--robot", default="franka")
    p.add_argument("--tasks", default="push,pick_place")
    p.add_argument("--headline-task", default="pick_place")
    p.add_argument("--headline", action="store_true", help="only A and B of the headline task")
    p.add_argument("--ab-only", action="store_true", help="A and B of every --tasks task, without the flow arms, the "
                                                          "other scene and the G1 (--headline: of the headline task)")
    p.add_argument("--flow-task", default="push")
    p.add_argument("--flow-steps", type=int, default=12_000,
                   help="training steps of the flow arms (0: --steps; the flow policy trains ~70 samples/s against "
                        "ACT's ~100 on one bf16 thread, so fewer steps keep it within 30 min)")
    p.add_argument("--demos", type=int, default=200)
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--eval-seed", type=int, default=100_000, help="first evaluation seed (training uses 0..demos-1)")
    p.add_argument("--cameras", default="front,wrist")
    p.add_argument("--size", type=int, default=96, help="recorded camera size (pixels)")
    p.add_argument("--image-size", type=int, default=96, help="policy input size (pixels)")
    p.add_argument("--steps", type=int, default=20_000,
                   help="training steps of the ACT arms: the default recipe trains 20,000 steps of 8 in ~21 min "
                        "alone with --threads 2 (the arms one after the other). On push, 20,000 steps over 14,000 "
                        "lifted B's held-out success 0.67 -> 0.74 (training seed 0) and 0.66 -> 0.7325 (seed 1) "
                        "and left A's at 0.34")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="auto",
                   help="training arithmetic (twin train --precision; auto: bf16 where the CPU has AVX-512 BF16 or "
                        "AMX, a third faster there; fp32 elsewhere, where emulated bf16 is ten times slower)")
    p.add_argument("--action-space", choices=("absolute", "delta"), default="absolute",
                   help="what the trained policies predict (twin train --action-space)")
    p.add_argument("--augment", default="shift",
                   help="training frame augmentation (twin train --augment), the same for both arms: shift moves "
                        "frames, sensor blurs, adds noise and tints white balance per frame; neither restyles the "
                        "scene. On push with the default backbone, shift,sensor lifted A's held-out success more than "
                        "B's (A 0.3375 -> 0.545, its camera family 0.06 -> 0.92; B, one restyled copy, 0.635 -> "
                        "0.6875): a generic augmentation that hides how much restyling adds, so the default leaves it "
                        "out; colour jitter or randconv did not lift B (sim2real_augment.json)")
    p.add_argument("--policy-config",
                   default='{"backbone_layers": 3, "backbone_width": 1.0, "state_dropout": 0.3, '
                           '"backbone": "mobilenet_v2", "backbone_weights": "imagenet", "frozen_blocks": 7, '
                           '"frozen_bn": true, "lr_backbone": 3e-5}',
                   help="JSON of policy config fields (twin train --policy-config); the default: MobileNetV2 from "
                        "ImageNet weights to stride 16 (6 x 6 tokens per camera), the stem and blocks 1-6 fixed, "
                        "blocks 7-13 fine-tuned at a tenth of the learning rate with fixed batch norms; state_dropout "
                        "0.3 (30 %% of training samples without their joint state). On push it took B's held-out "
                        "success from 0.465 (a quarter-width ResNet-18 from scratch, the default until session 32) "
                        "to 0.64, and fine-tuning fewer or more blocks did worse (sim2real_imagenet.json)")
    p.add_argument("--aux-weight", type=float, default=1.0,
                   help="the task arms' policies (ACT and flow) learn to locate the task objects too (aux_weight; 0: "
                        "off; not the G1 reach policy, whose reach demos record no objects): without it the flow "
                        "policy drove from proprioception and ignored its cameras (0/50 on vanilla push)")
    p.add_argument("--consistency-weight", type=float, default=0.0,
                   help="the task arms' consistency loss (consistency_weight): each restyled frame's image tokens are "
                        "pulled towards its original's, the same frame of the vanilla demo of its seed; the same "
                        "setting for both arms, but only B's data holds such pairs (A, one dataset, trains without); "
                        "off by default: on push, weights 1 and 0.25 lowered B to 0.62 / 0.285 and 0.58 / 0.29 "
                        "(vanilla / held-out, against 0.82 / 0.445 without; sim2real_consistency.json)")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (twin train --lr)")
    p.add_argument("--style-count", type=int, default=3,
                   help="restyled demos vary this many style families each, a random choice per episode (twin record "
                        "--style-count; 0: every family at once)")
    p.add_argument("--b-data", choices=("split", "superset"), default="superset",
                   help="B's data: superset = all of A's demos plus every one restyled, mixed 1:1 (the same "
                        "trajectories as A, more appearances); split = the first half vanilla, the second half "
                        "restyled (as many demos as A: the issue's first design, 0.26 held-out at best)")
    p.add_argument("--b-copies", type=int, default=2,
                   help="with --b-data superset: B's restyled data holds each of A's demos in this many styles (the "
                        "same seeds and expert trajectories, twin record --style-variant 0 .. N-1), still sampled "
                        "1:1 with the vanilla demos; more looks, no more trajectories. On push at 14,000 steps, "
                        "B's held-out success with training seed 0 was 0.635 with 1 copy, 0.67 with 2 and 0.7125 "
                        "with 3 (same steps and time); with seed 1, 0.66 with 2 and 0.5825 with 3: 3 copies are not "
                        "better beyond the seeds' spread (sim2real_copies3_seed0/1.json)")
    p.add_argument("--b-split", choices=("train", "train_wide"), default="train_wide",
                   help="the style split B's restyled demos are drawn from: train_wide (train plus values past the "
                        "held-out bands, so held-out values lie between trained ones but are never trained on), or "
                        "train (held-out values past every trained one); held-out evaluation is the same")
    p.add_argument("--train-split", action="store_true", help="also evaluate both arms on every family's train "
                   "split (twin eval --styles train): in-distribution restyled rows to read the held-out ones against")
    p.add_argument("--parallel", action="store_true", help="train and evaluate the plain and restyled arms side "
                                                             "by side, one process each with --threads")
    p.add_argument("--worlds", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=str(REPO / "benches" / "work" / "sim2real"))
    p.add_argument("--fresh", action="store_true", help="record and train everything anew")
    p.add_argument("--g1-steps", type=int, default=3000, help="training steps of the G1 reach policy")
    p.add_argument("--other-scene", default="twins/bird", help="a second capture the headline arms are evaluated in")
    p.add_argument("--other-scale", type=float, default=None,
                   help="metres per unit of --other-scene if arbitrary (default: none, but 0.3 for twins/bird, which "
                        "makes its desk 1.7 m across, room for the Franka's workspace)")
    p.add_argument("--only", choices=("g1", "other_scene", "flow"), default=None,
                   help="run one section alone: the G1 reach, the headline arms in the other scene (reusing the "
                        "trained arms), or the flow policy's A and B on --flow-task")
    p.add_argument("--docs", default=None, help="copy the restyled policy's first success and failure videos of the "
                                                  "headline task (and a PNG of each) into this folder")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.b_copies < 1 or (a.b_copies > 1 and a.b_data != "superset"):
        p.error("--b-copies must be at least 1, and above 1 only with --b-data superset")
    os.chdir(REPO)
    from spatial import BundlePaths

    if not BundlePaths(Path(a.scene)).splats.exists():
        raise SystemExit(f"{a.scene}: no splats (run `twin demo` then `twin splat {a.scene}`, or `make bench`)")
    if a.fresh and Path(a.work).exists():
        shutil.rmtree(a.work)
    t0 = time.perf_counter()
    if a.only:
        if a.only == "flow":
            res = {"flow_task": a.flow_task, a.flow_task: run_task(a, a.flow_task, ("flow",))}
        else:
            res = {"g1_reach": g1_reach(a)} if a.only == "g1" else {"other_scene": other_scene(a, a.headline_task)}
        res["settings"] = settings(a)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        name = f"sim2real_{a.only}.json"
        res["host"] = machine()
    else:
        tasks = [a.headline_task] if a.headline else [t for t in a.tasks.split(",") if t]
        extras = not (a.headline or a.ab_only)
        per_task = {t: run_task(a, t, ("act", "flow") if extras and t == a.flow_task else ("act",)) for t in tasks}
        head = per_task[a.headline_task]
        res = {"headline_task": a.headline_task,
               **{k: head[k] for k in ("restyled_vanilla_success", "restyled_heldout_success",
                                       "plain_heldout_success", "plain_vanilla_success")},
               "train_seconds": max(head["plain_train_seconds"], head["restyled_train_seconds"]),
               **goals(head), "goals": GOALS, "tasks": per_task}
        if a.docs:
            res["docs_media"] = docs_media(head, a.headline_task, Path(a.docs))
        if extras:
            res["other_scene"] = other_scene(a, a.headline_task)
            res["g1_reach"] = g1_reach(a)
        res["settings"] = settings(a)
        res["host"] = machine()
        res["seconds"] = round(time.perf_counter() - t0, 1)
        res["seconds_with_reused"] = round(res["seconds"] + reused_seconds(per_task), 1)
        name = "sim2real.json"
    out = REPO / "benches" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res) if a.json else json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
