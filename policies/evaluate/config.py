"""`PolicyEvalConfig` (`twin eval`) and `PolicyExportConfig` (`twin export-policy`): what to evaluate or export and
how. Light to import (no torch, no sim): the CLI builds its options from this module alone.

(`EvalConfig` is already the public name of the experts' evaluation, hence the `Policy` prefix.)
"""
from __future__ import annotations

from dataclasses import dataclass

from policies.tasks.spec import TASK_NAMES
from twin_kit import opt, validate_config

RUNTIMES = ("torch", "onnx")
INFERENCE = ("per-episode", "batched")
EXECUTIONS = ("auto", "ensemble", "chunk", "rtc")


@dataclass
class PolicyEvalConfig:
    """Evaluate a trained policy in parallel simulated worlds, per appearance (style family)."""

    run: str = opt(help="run folder (runs/NAME, holding policy/) or a saved policy folder", positional=True)
    bundle: str = opt(help="scene bundle directory (metric, or give --scale) or a mesh file in metres")
    task: str = opt(help="task: reach, push or pick_place", choices=TASK_NAMES)
    robot: str | None = opt(None, "robot (default: the one the policy's dataset was recorded with)")
    scale: float | None = opt(None, "metres per scene unit (required when the bundle's scale is arbitrary)",
                              low=0.0, low_open=True)
    robot_pose: tuple[float, float, float, float] | None = opt(
        None, "robot base x y z yaw (m, m, m, rad); default: the free spot the recorder also chooses", metavar="X")
    episodes: int = opt(50, "episodes per style (episode k resets from seed --seed + k in every style)",
                        low=1, high=1_000_000)
    worlds: int = opt(16, "parallel worlds per process",
                      low=1, high=4096)
    styles: str = opt("vanilla,held_out", "comma-separated appearances: vanilla (the capture's own splats), "
                                          "held_out (every style family's held-out split, one family at a "
                                          "time), style family names (that family's held-out split), train "
                                          "(every family's train split) or train_FAMILY")
    seed: int = opt(0, "seed of episode 0; episode k uses seed + k (its reset, style and noise)", low=0,
                    high=2**62)
    runtime: str = opt("torch", "run the policy in PyTorch, or its ONNX export through onnxruntime",
                       choices=RUNTIMES)
    onnx: str | None = opt(None, "with --runtime onnx: the exported file (default RUN/policy.onnx; exported now, "
                                 "into a temporary file, when there is none)")
    execution: str = opt("auto", "how chunks become actions: ensemble (a chunk every frame, ACT's temporal "
                                 "ensembling), chunk (n_action_steps actions per chunk), rtc (chunk, each new one "
                                 "spliced onto the rest of the last by real-time chunking; flow policies); auto: "
                                 "ensemble for ACT with a temporal_ensemble_coeff, else chunk", choices=EXECUTIONS)
    rtc_delay: int = opt(0, "with --execution rtc: actions of each new chunk already committed (simulated "
                            "inference delay, in frames)", low=0, high=1000)
    videos: str | None = opt(None, "folder for failure videos and results.json (default RUN/eval/TASK)")
    max_videos: int = opt(3, "failure videos kept per style (the lowest episode numbers); 0: none", low=0,
                          high=1000)
    success_videos: int = opt(0, "successful-episode videos kept per style (the lowest episode numbers), named "
                                 "<style>_episode<k>_success.mp4", low=0, high=1000)
    ray: str | None = opt(None, "shard episodes over a Ray cluster: its address, or auto (a running cluster, "
                                "else a local one)")
    workers: int = opt(0, "processes evaluating shards of the episodes (0: 1, or every CPU of the --ray "
                          "cluster); more than 1 without --ray starts a local Ray instance", low=0, high=4096)
    inference: str = opt("per-episode", "per-episode: one episode per inference call, so an episode's actions are "
                                        "bit-identical whatever world, worker or --worlds plays it; batched: every "
                                        "world in one call (faster, e.g. on a GPU; results may then differ in the "
                                        "last bits between process layouts)", choices=INFERENCE)
    threads: int = opt(1, "inference threads per process (torch or onnxruntime); per-episode inference is "
                          "bit-identical across processes and Ray workers at the same --threads", low=1, high=256)
    device: str = opt("cpu", "torch device of the policy (cpu, cuda)", pattern=r"cpu|cuda(:\d+)?",
                      pattern_help="cpu, cuda or cuda:N")
    episode_s: float | None = opt(None, "episode length limit in seconds (default: the task's)", low=0.1,
                                  high=3600)
    control_dt: float = opt(0.02, "seconds per control step (as recorded: the policy's frame holds "
                                  "1 / (fps * control_dt) steps)", low=0.001, high=0.1)

    def __post_init__(self):
        validate_config(self)


@dataclass
class PolicyExportConfig:
    """Export a trained policy, processors included, for a runtime without PyTorch."""

    run: str = opt(help="run folder (runs/NAME, holding policy/) or a saved policy folder", positional=True)
    onnx: bool = opt(False, "write ONNX: uint8 HWC frames + raw state in, the action chunk in robot units out")
    out: str | None = opt(None, "file to write (default RUN/policy.onnx)")

    def __post_init__(self):
        validate_config(self)
