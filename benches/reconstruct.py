"""Camera stage benchmark: Twin (load_frames + run_sfm) against pycolmap's default pipeline, same frames.

Both run in this one process on the same images at the same resolution, and both are scored against the
reference model with the VGGT relative-pose protocol (AUC@30 over all image pairs), so the speed-up is a
ratio that survives a noisy, shared machine.

    python benches/reconstruct.py [--data /work/shared/data/bird] [--limit N] [--skip-peer] [--json]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    """CPU seconds of this process, all threads (wall time alone misleads on a shared machine)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _ratio(a, b):
    return a / b if b else float("nan")


def _scores(cams, ref, n_total):
    from spatial import evaluate_poses

    m = evaluate_poses(cams, ref, n_total=n_total)
    # every input frame counts: a frame the method lost scores as failed pairs
    frac = m["n_matched"] / n_total if n_total else 0.0
    pair_frac = (m["n_matched"] * (m["n_matched"] - 1)) / max(1, n_total * (n_total - 1))
    out = {k: m.get(k) for k in ("rra_auc30", "rta_auc30", "auc30", "n_matched", "ate_rel")}
    out["auc30_all_pairs"] = (m["auc30"] or 0.0) * pair_frac
    out["registered_fraction"] = frac
    return out


def run_twin(images: Path, work: Path, mapper: str, limit: int | None):
    from spatial import FramesConfig, SfmConfig, load_frames, run_sfm

    t0, c0 = time.perf_counter(), _cpu()
    src = images
    if limit:
        src = work / "subset"
        src.mkdir(parents=True, exist_ok=True)
        for p in sorted(images.iterdir())[:limit]:
            shutil.copy(p, src / p.name)
    fs = load_frames(src, FramesConfig())
    t1 = time.perf_counter()
    res = run_sfm(fs, work / "twin", SfmConfig(mapper=mapper))
    t2 = time.perf_counter()
    return res.cameras, len(fs.frames), {"frames": t1 - t0, **res.timings, "total": t2 - t0, "cpu": _cpu() - c0}


def run_peer(images: Path, work: Path, limit: int | None):
    """pycolmap's defaults: extract_features, match_exhaustive, incremental_mapping."""
    import pycolmap

    from spatial import camera_from_pycolmap

    names = sorted(p.name for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if limit:
        names = names[:limit]
    db = work / "peer.db"
    out = work / "peer_sparse"
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), _cpu()
    pycolmap.extract_features(db, images, image_names=names)
    t1 = time.perf_counter()
    pycolmap.match_exhaustive(db)
    t2 = time.perf_counter()
    recs = pycolmap.incremental_mapping(db, images, out)
    t3 = time.perf_counter()
    cams = []
    if recs:
        rec = max(recs.values(), key=lambda r: r.num_reg_images())
        cams = [camera_from_pycolmap(im.camera, im.cam_from_world(), im.name)
                for im in rec.images.values() if im.has_pose]
    return cams, len(names), {"features": t1 - t0, "matching": t2 - t1, "mapping": t3 - t2, "total": t3 - t0,
                             "cpu": _cpu() - c0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "bird",
                    help="folder with images/ and the reference model sparse/0")
    ap.add_argument("--mapper", default="global", choices=("global", "incremental"), help="Twin's mapper")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images (quick runs)")
    ap.add_argument("--skip-peer", action="store_true", help="time Twin only")
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    a = ap.parse_args(argv)

    from spatial import read_reference
    from twin_kit import emit_json, machine

    images = a.data / "images"
    ref = read_reference(a.data / "sparse" / "0")
    with tempfile.TemporaryDirectory(prefix="twin_bench_") as tmp:
        tmp = Path(tmp)
        tcams, n, tt = run_twin(images, tmp / "t", a.mapper, a.limit)
        ts = _scores(tcams, ref, n)
        rows = [("twin", tt, ts, len(tcams))]
        if not a.skip_peer:
            (tmp / "p").mkdir()
            pcams, pn, pt = run_peer(images, tmp / "p", a.limit)
            rows.append(("pycolmap default", pt, _scores(pcams, ref, pn), len(pcams)))

    print(f"{'method':18s} {'seconds':>8s} {'registered':>11s} {'RRA@30':>7s} {'RTA@30':>7s} {'AUC@30':>7s}  stages")
    for name, t, s, k in rows:
        stages = " ".join(f"{key}={v:.1f}" for key, v in t.items() if key not in ("total", "cpu"))
        stages += f"  (cpu {t['cpu']:.0f} s)"
        print(f"{name:18s} {t['total']:8.1f} {k:5d}/{n:<5d} {s['rra_auc30'] or 0:7.2f} {s['rta_auc30'] or 0:7.2f} "
              f"{s['auc30'] or 0:7.2f}  {stages}")
    out = {"data": str(a.data), "frames": n, "twin_seconds": round(tt["total"], 2),
           "twin_registered": len(tcams), "twin_auc30": ts["auc30"], "twin_rra_auc30": ts["rra_auc30"],
           "twin_rta_auc30": ts["rta_auc30"], "twin_stages": {k: round(v, 2) for k, v in tt.items()},
           "twin_mapper": a.mapper}
    if len(rows) > 1:
        _, pt, ps, pk = rows[1]
        out.update({"peer_seconds": round(pt["total"], 2), "peer_registered": pk, "peer_auc30": ps["auc30"],
                    "peer_rra_auc30": ps["rra_auc30"], "peer_rta_auc30": ps["rta_auc30"],
                    "peer_stages": {k: round(v, 2) for k, v in pt.items()},
                    "speedup": round(_ratio(pt["total"], tt["total"]), 2),
                    "cpu_speedup": round(_ratio(pt["cpu"], tt["cpu"]), 2)})
        print(f"speed-up {out['speedup']:.2f}x, AUC@30 twin {ts['auc30']:.2f} vs peer {ps['auc30'] or 0:.2f}")
    if a.json:
        out["host"] = machine()
        emit_json(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
