"""Benchmark: the default ACT and flow policies on the CPU — parameters, one training step (forward + backward +
AdamW, batch --batch, two cameras at --size px) and inference latency for one observation — against the cost of
their image backbone alone on the same images in the same run.

    python benches/policy_step.py --json [--batch 8] [--size 96] [--threads 0] [--repeat 7]
        [--act-config JSON] [--precision fp32|bf16] [--policies act,flow]

Training step: `policy(preprocessor(raw))` loss, backward, AdamW step; median of --repeat after two warm-ups,
alternating with the peer.
Inference: `policy.infer` on one observation (ACT: one chunk; flow: its Euler steps; flow_rtc: the same with a
committed prefix and ΠGDM guidance). Peer: a copy of the policy's own image backbone (fixed blocks and all)
forward + backward over the same batch x 2 images; `*_ratio` = policy step / backbone step (how much the
transformer and the rest add).
--act-config: the ACT's config fields as `twin train --policy-config` takes them (e.g. the sim2real recipe's
MobileNetV2 with fixed blocks). --precision bf16 trains as
`twin train --precision bf16` does: autocast, channels-last weights and images, fused AdamW.
`host`: the machine measured on (twin_kit.machine).
The last stdout line is one JSON object.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from policies import PolicyFeatures, make_policy  # noqa: E402
from twin_kit import machine, torch_threads  # noqa: E402

STATE = ACTION = 9  # a Franka: 7 joints + 2 fingers
CAMERAS = ("observation.images.front", "observation.images.wrist")
OBJECTS = "privileged.object_poses"  # the dataset column an auxiliary object head (aux_weight > 0) learns from


def features(size: int) -> PolicyFeatures:
    unit = {"mean": [0.0] * STATE, "std": [1.0] * STATE, "min": [-1.0] * STATE, "max": [1.0] * STATE}
    return PolicyFeatures([f"j{i}" for i in range(STATE)], [f"j{i}" for i in range(ACTION)],
                          {k: [size, size] for k in CAMERAS}, 10, "franka",
                          {"observation.state": unit, "action": unit}, objects=["object"])


def raw_batch(b: int, size: int, chunk: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {"observation.state": torch.randn(b, STATE, generator=g), "action": torch.randn(b, chunk, ACTION,
                                                                                          generator=g)}
    out[OBJECTS] = torch.randn(b, 1, 2, generator=g)  # the targets of an auxiliary object head (aux_weight > 0)
    for k in CAMERAS:
        out[k] = torch.randint(0, 256, (b, size, size, 3), dtype=torch.uint8, generator=g)
    return out


def timed(*fns, repeat: int) -> list[float]:
    """Median seconds of each function, run alternately (so a busy machine slows them alike)."""
    for _ in range(2):
        for fn in fns:
            fn()
    ts: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, ts, strict=True):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return [statistics.median(t) for t in ts]


def bench(name: str, args) -> dict:
    torch.manual_seed(0)
    policy = make_policy(name, json.loads(args.act_config) if name == "act" and args.act_config else None,
                         features(args.size))
    cfg = policy.config
    raw = raw_batch(args.batch, args.size, cfg.chunk_size)
    bf16 = args.precision == "bf16"
    if bf16:
        policy.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(policy.optim_groups(), weight_decay=cfg.weight_decay, fused=True if bf16 else None)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def layout(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.contiguous(memory_format=torch.channels_last) if bf16 and v.ndim == 4 else v
                for k, v in batch.items()}

    def step():
        with autocast():
            loss, _ = policy.train()(layout(policy.preprocessor(raw)))
        opt.zero_grad()
        loss.backward()
        opt.step()

    backbone = copy.deepcopy(policy.images.backbone).train()
    images = torch.randn(args.batch * len(CAMERAS), 3, cfg.image_size, cfg.image_size)
    if bf16:
        images = images.contiguous(memory_format=torch.channels_last)

    def peer():
        backbone.zero_grad()
        with autocast():
            out = backbone(images)
        out.float().sum().backward()

    train_s, peer_s = timed(step, peer, repeat=args.repeat)
    one = {k: v[:1] for k, v in raw.items() if k != "action"}
    policy.eval()
    out = {f"{name}_params": policy.num_parameters(),
           f"{name}_backbone_params": sum(p.numel() for p in policy.images.backbone.parameters()),
           f"{name}_train_step_s": round(train_s, 4), f"{name}_backbone_step_s": round(peer_s, 4),
           f"{name}_ratio": round(train_s / peer_s, 2),
           f"{name}_infer_s": round(timed(lambda: policy.infer(one), repeat=args.repeat)[0], 4)}
    if name == "flow":
        prefix = torch.zeros(1, cfg.chunk_size // 2, ACTION)
        out["flow_rtc_infer_s"] = round(timed(lambda: policy.infer(one, prefix_actions=prefix, prefix_len=3),
                                              repeat=args.repeat)[0], 4)
    out[f"{name}_config"] = {k: getattr(cfg, k) for k in ("chunk_size", "image_size", "backbone", "backbone_width",
                                                          "frozen_blocks", "dim", "heads", "ff_dim")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=96, help="camera frame side (resized to the config's image_size)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--act-config", default=None, help="JSON of ACT config fields (twin train --policy-config)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--policies", default="act,flow", help="comma-separated: act, flow")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with torch_threads(args.threads):
        result = {"batch": args.batch, "size": args.size, "threads": torch.get_num_threads(),
                  "precision": args.precision, "act_config_json": args.act_config}
        for name in args.policies.split(","):
            result.update(bench(name, args))
    if not args.json:
        for k, v in result.items():
            print(f"{k:>24}: {v}")
    result["host"] = machine()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
