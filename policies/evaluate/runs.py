"""Where a trained policy lives: a run folder (`runs/NAME`, its policy in `policy/`) or a bare saved-policy
folder; and where its evaluation and export go by default."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from twin_kit import InputError

POLICY_DIR = "policy"        # inside a run folder (twin train --out runs/NAME)
ONNX_FILE = "policy.onnx"    # twin export-policy's default, beside the policy
EVAL_DIR = "eval"            # twin eval's default output folder, per task inside it


def resolve_run(run: str | Path) -> tuple[Path, Path]:
    """(run folder, policy folder) of RUN: a run folder holding policy/, or a saved policy folder itself."""
    from policies.pretrained import CONFIG_FILE

    run = Path(run)
    if not run.exists():
        raise InputError(f"{run}: no such run or policy folder")
    if not run.is_dir():
        raise InputError(f"{run}: is a file; give a run folder (runs/NAME) or a saved policy folder")
    if (run / POLICY_DIR / CONFIG_FILE).is_file():
        return run, run / POLICY_DIR
    if (run / CONFIG_FILE).is_file():
        return run, run
    raise InputError(f"{run}: neither a run folder (no {POLICY_DIR}/{CONFIG_FILE}) nor a saved policy "
                     f"(no {CONFIG_FILE})")


def weights_digest(policy_dir: Path) -> str:
    """SHA-256 of the policy's weights file: an export names the weights it was made from."""
    from policies.pretrained import WEIGHTS_FILE

    h = hashlib.sha256()
    try:
        with open(policy_dir / WEIGHTS_FILE, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise InputError(f"{policy_dir / WEIGHTS_FILE}: cannot read ({e.strerror})") from None
    return h.hexdigest()


def trained_instructions(run: Path) -> tuple[list[str], list[str]] | None:
    """(task instructions, dataset roots) of the datasets a training run read (its run.json, as `twin train`
    writes it), or None when that is unknown (a bare policy folder, datasets moved away)."""
    from policies.datasets import read_dataset
    from policies.train.checkpoint import RunPaths

    f = RunPaths(run).run_file
    try:
        roots = [str(r) for r in json.loads(f.read_text()).get("datasets") or []]
    except (OSError, ValueError, AttributeError):
        return None
    tasks: list[str] = []
    for root in roots:
        try:
            tasks += [t for t in read_dataset(root).tasks if t not in tasks]
        except (InputError, OSError):
            return None
    return (tasks, roots) if tasks else None
