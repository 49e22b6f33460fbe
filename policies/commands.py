"""policies' verbs: `twin record`, `twin view` (adds --dataset to sim's), `twin export` (adds --task to scenes').

Configs only: each runner imports its heavy parts when the verb runs."""
from __future__ import annotations

from policies.export.config import TaskExportConfig, run_task_export
from policies.record.config import RecordConfig
from policies.replay.cli import DatasetViewConfig, run_view
from twin_kit import Verb


def _run_record(cfg: RecordConfig, json_out: bool = False) -> int:
    from policies.record.run import run_record

    return run_record(cfg, json_out)


VERBS = [Verb("record", RecordConfig, _run_record,
              "record scripted-expert demonstrations of a task in a scene as a LeRobotDataset v3.0",
              "Record scripted-expert demonstrations of a task (reach, push, pick_place) in a scene bundle: "
              "parallel worlds, cameras rendered from the scan's splats, per-episode restyling, written as a "
              "LeRobotDataset v3.0. Episode k uses seed --seed + k whatever world or worker runs it; failed "
              "episodes are kept and marked (meta/episodes `success`)."),
         Verb("view", DatasetViewConfig, run_view, "open a scene bundle in the browser viewer (viser); --sim adds a "
              "live robot, --dataset replays a recorded episode"),
         Verb("export", TaskExportConfig, run_task_export,
              "export a scene bundle to USD/USDZ, PLY, GLB, COLMAP, nerfstudio; --task: a whole task as one USD stage",
              "Export a scene bundle to other tools' formats. With --usd --task T --robot R the task (reset of --seed) "
              "becomes one OpenUSD stage for Isaac Sim / Isaac Lab: the scan's splats and convex collision pieces, "
              "the task objects as rigid bodies with mass and friction, the robot as a UsdPhysics articulation "
              "(links, joints with limits, drives) built from its URDF.")]
