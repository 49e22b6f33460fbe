"""policies' verbs: `twin record` (configs only; the runner imports its heavy parts when the verb runs)."""
from __future__ import annotations

from policies.record.config import RecordConfig
from twin_kit import Verb


def _run_record(cfg: RecordConfig, json_out: bool = False) -> int:
    from policies.record.run import run_record

    return run_record(cfg, json_out)


VERBS = [Verb("record", RecordConfig, _run_record,
              "record scripted-expert demonstrations of a task in a scene as a LeRobotDataset v3.0",
              "Record scripted-expert demonstrations of a task (reach, push, pick_place) in a scene bundle: "
              "parallel worlds, cameras rendered from the scan's splats, per-episode restyling, written as a "
              "LeRobotDataset v3.0. Episode k uses seed --seed + k whatever world or worker runs it; failed "
              "episodes are kept and marked (meta/episodes `success`).")]
