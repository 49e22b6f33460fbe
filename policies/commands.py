"""policies' verbs: `twin record`, `twin view` (adds --dataset to sim's), `twin export` (adds --task to scenes').

Configs only: each runner imports its heavy parts when the verb runs."""
from __future__ import annotations

from policies.evaluate.config import PolicyEvalConfig, PolicyExportConfig
from policies.export.config import TaskExportConfig, run_task_export
from policies.record.config import RecordConfig
from policies.replay.cli import DatasetViewConfig, run_view
from policies.runtime.config import ServeConfig
from policies.runtime.deploy import DeployConfig
from policies.train.config import TrainConfig, train_verb
from twin_kit import Verb


def _run_record(cfg: RecordConfig, json_out: bool = False) -> int:
    from policies.record.run import run_record

    return run_record(cfg, json_out)


def _run_eval(cfg: PolicyEvalConfig, json_out: bool = False) -> int:
    from policies.evaluate.run import run_eval

    return run_eval(cfg, json_out)


def _run_export_policy(cfg: PolicyExportConfig, json_out: bool = False) -> int:
    from policies.evaluate.export import run_export_policy

    return run_export_policy(cfg, json_out)


def _run_serve(cfg: ServeConfig, json_out: bool = False) -> int:
    from policies.runtime.server import run_serve

    return run_serve(cfg, json_out)


def _run_deploy(cfg: DeployConfig, json_out: bool = False) -> int:
    from policies.runtime.deploy import run_deploy

    return run_deploy(cfg, json_out)


VERBS = [Verb("record", RecordConfig, _run_record,
              "record scripted-expert demonstrations of a task in a scene as a LeRobotDataset v3.0",
              "Record scripted-expert demonstrations of a task (reach, push, pick_place) in a scene bundle: "
              "parallel worlds, cameras rendered from the scan's splats, per-episode restyling, written as a "
              "LeRobotDataset v3.0. Episode k uses seed --seed + k whatever world or worker runs it; failed "
              "episodes are kept and marked (meta/episodes `success`)."),
         Verb("view", DatasetViewConfig, run_view, "open a scene bundle in the browser viewer (viser); --sim adds a "
              "live robot, --dataset replays a recorded episode, --policy plays a trained policy live"),
         Verb("export", TaskExportConfig, run_task_export,
              "export a scene bundle to USD/USDZ, PLY, GLB, COLMAP, nerfstudio; --task: a whole task as one USD stage",
              "Export a scene bundle to other tools' formats. With --usd --task T --robot R the task (reset of --seed) "
              "becomes one OpenUSD stage for Isaac Sim / Isaac Lab: the scan's splats and convex collision pieces, "
              "the task objects as rigid bodies with mass and friction, the robot as a UsdPhysics articulation "
              "(links, joints with limits, drives) built from its URDF."),
         Verb("train", TrainConfig, train_verb, "train an ACT or flow-matching policy on LeRobot datasets into a run "
              "folder (torchrun-ready)",
              "Train a visuomotor policy (--policy act or flow) on one or more LeRobotDatasets, mixed by --mix (e.g. "
              "1,1 original and restyled): AdamW with warmup and cosine decay, validation on held-out episodes, "
              "checkpoints and --resume, loss curves (curves.json, curves.png), the final policy in OUT/policy. "
              "Data-parallel with torchrun --nproc_per_node N -m twin_cli train ... (gloo on CPU, NCCL on CUDA)."),
         Verb("eval", PolicyEvalConfig, _run_eval, "evaluate a trained policy in parallel simulated worlds, per "
              "appearance (vanilla and held-out style families)",
              "Play a trained policy (a run folder or a saved policy) in a task's parallel worlds, with the "
              "recorder's cameras and restyling: episode k of every style resets from seed --seed + k, so two "
              "policies meet the same initial states. Prints a success table per style with 95 % Wilson "
              "intervals, keeps a few failure videos per style, shards over Ray with --ray, and runs the ONNX "
              "export through onnxruntime with --runtime onnx."),
         Verb("export-policy", PolicyExportConfig, _run_export_policy, "export a trained policy, processors "
              "included, to ONNX",
              "Write the policy's inference graph with its processors (uint8 HWC frames and the raw state in, the "
              "action chunk in robot units out; flow: noise and real-time chunking prefix as inputs) to ONNX, "
              "checked against PyTorch before it is written."),
         Verb("serve", ServeConfig, _run_serve, "serve a trained policy over a websocket in openpi's wire format",
              "Serve a trained policy (a run, a saved policy or its ONNX export) over a websocket that openpi-client "
              "and Twin's own client speak: a metadata frame on connect (every observation key with its shape and "
              "dtype, the action shape), then one msgpack observation in, one action chunk in robot units out. "
              "Several clients at once, /healthz, loopback by default; another --host needs --token."),
         Verb("deploy", DeployConfig, _run_deploy, "run a trained policy on a robot (sim, franka, g1) at a fixed rate, "
              "with the safety layer and the watchdog",
              "Drive a robot with a trained policy (a run in this process, or a policy server at ws://HOST:PORT): a "
              "fixed-rate control loop, inference on a worker thread (the next chunk computed while this one runs), "
              "chunk seams spliced by real-time chunking (flow) or temporal ensembling (ACT), every target through "
              "the safety filter (joint, velocity, acceleration limits, max step), and a watchdog that holds when "
              "chunks stop coming and brings the robot to a controlled stop after --stop-ms. Each episode is "
              "recorded as a LeRobot v3 episode with its safety interventions.")]
