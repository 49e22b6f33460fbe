"""`twin eval-poses`: a bundle's cameras against reference poses, as a table and as JSON."""
from __future__ import annotations

from rich.table import Table

from twin_kit import InputError, console, emit_json


def run_eval_poses(cfg, json_out: bool = False) -> int:
    from spatial.evaluation.metrics import evaluate_poses
    from spatial.interop.reference import read_reference

    est = read_reference(cfg.bundle)
    ref = read_reference(cfg.reference)
    if not ref:
        raise InputError(f"{cfg.reference}: reference holds no cameras")
    m = evaluate_poses(est, ref)
    show_pose_metrics(m, title=f"{cfg.bundle} vs {cfg.reference}")
    if json_out:
        emit_json(m)
    return 0


def show_pose_metrics(m: dict, title: str = "pose accuracy") -> None:
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    def f(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    rows = [("registered fraction", f(m["registered_fraction"], ".3f"))]
    for k in (5, 15, 30):
        rows.append((f"RRA / RTA AUC@{k}", f"{f(m[f'rra_auc{k}'], '.1f')} / {f(m[f'rta_auc{k}'], '.1f')}"))
    rows.append(("ATE / scene extent", "n/a" if m["ate_rel"] is None else f"{m['ate_rel'] * 100:.3f} %"))
    for r in rows:
        t.add_row(*r)
    console.print(t)
