"""Feed-forward geometry benchmark: the VGGT-1B network (random weights of the official names and shapes) through
`twin reconstruct --method vggt`, its CPU cost per frame at 518 px, and the SfM path on the same frames.

    python benches/feedforward.py [--weights model.safetensors | --work DIR [--keep]] [--frames DIR]
                                  [--count 4] [--sizes 2,4] [--threads 2] [--seed 10] [--json]

1. Checkpoint: without --weights, VGGT-1B is built with PyTorch's default initialisation (seeded) and saved as
   a `.safetensors` of the official names and shapes, fp32, without Twin's config metadata (so it is read as
   the official files are); ~5 GB in --work (a temporary folder by default), removed at the end unless --keep.
2. `twin reconstruct FRAMES --method vggt --weights W --json` on --count frames (default: every other image
   of the bird scene's first eight), as a child process: wall seconds, the child's own peak RSS (its VmHWM,
   polled every 0.2 s: wait4's ru_maxrss would start from this process's RSS at the fork), and
   whether the bundle reads back (`spatial.read_bundle`) with a finite camera for every frame. With the bird
   scene's reference model, AUC@30 of the cameras too (random weights: near zero is expected).
3. The network forward alone, in this process: the checkpoint loaded strictly (`load_vggt`), then fp32 passes
   over 2 and 4 of the frames prepared as the pipeline prepares them (longest side 518, multiples of 14) on
   --threads torch threads: wall and CPU seconds per frame and the peak RSS of the pass (weights included).
4. Peer, same run and frames: `twin reconstruct FRAMES --json` (the default SfM path), timed the same way.

Random weights may predict a field of view of 0 (the camera head's fov activation is a ReLU): `twin reconstruct`
then refuses in one line (exit code 2), recorded as `vggt1b_error`; the strict load and the timed passes still run.
With the default seed (10) both fields of view come out positive and the bundle is written (seed 0: refused).
Sizes in GB are 1e9 bytes. Prints a table, then one JSON object as the last stdout line (also written to
benches/results/feedforward.json).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# keep this folder off the import path when run as a script (benches/sim.py is named like the `sim` package)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "bird"
GB = 1e9
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> None:
    """Reset this process's resident-set high-water mark (VmHWM) to its current size, where Linux allows it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def pick_frames(src: Path, count: int, dst: Path) -> list[str]:
    """Copy `count` images of `src` into `dst`: every other one from the start (neighbours overlap well)."""
    names = sorted(p.name for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    chosen = names[: 2 * count : 2]
    if len(chosen) < count:
        chosen = names[:count]
    if len(chosen) < count:
        sys.exit(f"error: {src} has {len(names)} images, --count {count} needs more")
    dst.mkdir(parents=True, exist_ok=True)
    for n in chosen:
        shutil.copy(src / n, dst / n)
    return chosen


def make_checkpoint(path: Path, seed: int) -> dict:
    """VGGT-1B with random values, saved as the official checkpoint would be (names, shapes, fp32, no metadata)."""
    import torch
    from safetensors.torch import save_file

    from spatial import VGGT_1B, build_vggt

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = build_vggt(VGGT_1B)
    t1 = time.perf_counter()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    params = int(sum(p.numel() for p in model.parameters()))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    t2 = time.perf_counter()
    del state, model
    return {"build_s": round(t1 - t0, 1), "save_s": round(t2 - t1, 1), "params": params,
            "peak_rss_gb": round(_status_kb("VmHWM") * 1024 / GB, 2)}


def run_child(args: list[str], log_dir: Path, tag: str) -> dict:
    """Run `python -m twin_cli ARGS` as a child: wall seconds, its own peak RSS and CPU seconds, its JSON line,
    or its one-line error."""
    out_p, err_p = log_dir / f"{tag}.stdout", log_dir / f"{tag}.stderr"
    with open(out_p, "wb") as out, open(err_p, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "twin_cli", *args], stdout=out, stderr=err, cwd=REPO)
        status_file, peak_kb = Path(f"/proc/{proc.pid}/status"), 0
        while True:   # the child's own VmHWM: its rusage ru_maxrss starts at this (large) process's RSS at fork
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                peak_kb = max(peak_kb, next(int(ln.split()[1]) for ln in status_file.read_text().splitlines()
                                            if ln.startswith("VmHWM:")))
            except (OSError, StopIteration, ValueError):
                pass
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    res = {"exit_code": code, "seconds": round(seconds, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
           "peak_rss_gb": round(peak_kb * 1024 / GB, 2)}
    lines = [ln for ln in out_p.read_text(errors="replace").splitlines() if ln.strip()]
    if code == 0 and lines:
        try:
            res["summary"] = json.loads(lines[-1])
        except ValueError:
            pass
    if code != 0:
        errs = [ln.strip() for ln in err_p.read_text(errors="replace").splitlines() if ln.strip()]
        res["error"] = errs[-1] if errs else f"exit code {code}"
    return res


def check_bundle(path: Path, names: list[str], reference) -> dict:
    """The bundle read back: every frame has a finite camera; AUC@30 against the reference when there is one."""
    from spatial import evaluate_poses, read_bundle

    b = read_bundle(path)
    finite = all(np.isfinite(c.world_to_cam).all() and np.isfinite([c.fx, c.fy, c.cx, c.cy]).all()
                 for c in b.cameras)
    rec = b.manifest.get("metrics", {}).get("reconstruct", {})
    out = {"valid": bool(len(b.cameras) == len(names) and finite), "cameras": len(b.cameras),
           "points": rec.get("points"), "mesh_triangles": rec.get("mesh_triangles")}
    if reference is not None:
        m = evaluate_poses(b.cameras, reference, n_total=len(names))
        out["auc30"] = None if m["auc30"] is None else round(m["auc30"], 2)
    return out


def time_forward(weights: Path, frames: Path, sizes: list[int], threads: int) -> dict:
    """Load the checkpoint strictly, then fp32 forward passes over the first n frames for each n in `sizes`."""
    import cv2
    import torch

    from spatial import infer, load_vggt, prepare_images
    from twin_kit import torch_threads

    paths = sorted(p for p in frames.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    t0 = time.perf_counter()
    model = load_vggt(weights, dtype=torch.float32)   # strict: every official name and shape, nothing extra
    out = {"load_s": round(time.perf_counter() - t0, 1),
           "params": int(sum(p.numel() for p in model.parameters()))}
    x, _ = prepare_images(images, mode="fit", target=model.cfg.img_size, patch=model.cfg.patch_size)
    out["input_size"] = [int(x.shape[-1]), int(x.shape[-2])]
    runs = []
    with torch_threads(threads):
        for n in sizes:
            _reset_peak()
            t, c = time.perf_counter(), _cpu_self()
            pred = infer(model, x[:n], device="cpu", precision="fp32")
            wall, cpu = time.perf_counter() - t, _cpu_self() - c
            finite = all(bool(torch.isfinite(v).all()) for v in pred.values())
            runs.append({"frames": n, "seconds": round(wall, 1), "cpu_s": round(cpu, 1),
                         "s_per_frame": round(wall / n, 2), "cpu_s_per_frame": round(cpu / n, 2),
                         "peak_rss_gb": round(_status_kb("VmHWM") * 1024 / GB, 2), "outputs_finite": finite})
            del pred
    out["runs"] = runs
    del model
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None, help="use this VGGT-1B checkpoint instead of making one")
    ap.add_argument("--work", type=Path, default=None, help="folder for the random checkpoint and the bundles "
                                                           "(default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the random checkpoint (and --work) at the end")
    ap.add_argument("--frames", type=Path, default=None, help="folder of images (default: the bird scene's)")
    ap.add_argument("--count", type=int, default=4, help="frames given to `twin reconstruct`")
    ap.add_argument("--sizes", default="2,4", help="frame counts of the timed network passes")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the timed network passes")
    ap.add_argument("--seed", type=int, default=10, help="seed of the random weights (10: positive fields of view, "
                    "so a bundle is written; 0: the fov ReLU gives 0 and reconstruct refuses in one line)")
    ap.add_argument("--skip-peer", action="store_true", help="no SfM run")
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    if a.weights is not None and not a.weights.is_file():
        sys.exit(f"error: --weights {a.weights}: no such file")
    src = a.frames or DATA / "images"
    if not src.is_dir():
        sys.exit(f"error: --frames {src}: no such folder")

    from spatial import read_reference
    from twin_kit import emit_json, machine

    reference = read_reference(DATA / "sparse" / "0") if a.frames is None and (DATA / "sparse").is_dir() else None
    work = a.work or Path(tempfile.mkdtemp(prefix="twin_ff_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    made = None
    try:
        frames = work / "frames"
        if frames.exists():
            shutil.rmtree(frames)
        names = pick_frames(src, max(a.count, *sizes), frames)
        if len(names) > a.count:   # the reconstruct runs see --count frames; the timed passes may use more
            recon = work / "frames_reconstruct"
            shutil.rmtree(recon, ignore_errors=True)
            recon.mkdir()
            for n in names[: a.count]:
                shutil.copy(frames / n, recon / n)
        else:
            recon = frames
        weights = a.weights
        if weights is None:
            weights = work / "vggt1b_random.safetensors"
            print(f"building VGGT-1B with random values -> {weights}", file=sys.stderr, flush=True)
            made = make_checkpoint(weights, a.seed)
        out = {"frames": names[: a.count], "weights": str(weights), "checkpoint_made_here": a.weights is None,
               "vggt1b_checkpoint_gb": round(weights.stat().st_size / GB, 2)}
        if made:
            out.update({"vggt1b_params": made["params"], "checkpoint_build_s": made["build_s"],
                        "checkpoint_save_s": made["save_s"], "checkpoint_peak_rss_gb": made["peak_rss_gb"]})

        print("twin reconstruct --method vggt ...", file=sys.stderr, flush=True)
        vg = run_child(["reconstruct", str(recon), "--method", "vggt", "--weights", str(weights),
                        "--out", str(work / "twin_vggt"), "--overwrite", "--quiet", "--json"], work, "vggt")
        out.update({"vggt1b_reconstruct_s": vg["seconds"], "vggt1b_reconstruct_cpu_s": vg["cpu_s"],
                    "vggt1b_peak_rss_gb": vg["peak_rss_gb"], "vggt1b_exit_code": vg["exit_code"]})
        if "error" in vg:
            out["vggt1b_error"] = vg["error"]
        else:
            net = vg.get("summary", {}).get("network", {})
            out["vggt1b_network_s"] = net.get("seconds")
            out["vggt1b_load_s"] = net.get("load_seconds")
            out["vggt1b_bundle"] = check_bundle(work / "twin_vggt", names[: a.count], reference)

        print("network forward passes ...", file=sys.stderr, flush=True)
        fw = time_forward(weights, frames, sizes, a.threads)
        out.setdefault("vggt1b_params", fw["params"])
        last = fw["runs"][-1]
        out.update({"vggt1b_input_size_518": fw["input_size"], "vggt1b_strict_load_s": fw["load_s"],
                    "vggt1b_s_per_frame_518": last["s_per_frame"],
                    "vggt1b_cpu_s_per_frame_518": last["cpu_s_per_frame"],
                    "vggt1b_forward_peak_rss_gb": max(r["peak_rss_gb"] for r in fw["runs"]),
                    "vggt1b_forward_threads": a.threads, "vggt1b_forward": fw["runs"]})

        if not a.skip_peer:
            print("twin reconstruct (SfM) ...", file=sys.stderr, flush=True)
            sf = run_child(["reconstruct", str(recon), "--out", str(work / "twin_sfm"), "--overwrite", "--quiet",
                            "--json"], work, "sfm")
            out.update({"sfm_reconstruct_s": sf["seconds"], "sfm_reconstruct_cpu_s": sf["cpu_s"],
                        "sfm_peak_rss_gb": sf["peak_rss_gb"], "sfm_exit_code": sf["exit_code"]})
            if "error" in sf:
                out["sfm_error"] = sf["error"]
            else:
                out["sfm_bundle"] = check_bundle(work / "twin_sfm", names[: a.count], reference)
            if "error" not in vg and "error" not in sf and sf["seconds"]:
                out["vggt1b_over_sfm_time"] = round(vg["seconds"] / sf["seconds"], 2)
    finally:
        if a.keep:
            print(f"kept {work}", file=sys.stderr)
        if a.work is None and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif made and not a.keep:
            (work / "vggt1b_random.safetensors").unlink(missing_ok=True)

    print(f"{'path':22s} {'seconds':>8s} {'cpu s':>7s} {'peak RSS GB':>11s}  result")
    print(f"{'vggt-1b (random)':22s} {out['vggt1b_reconstruct_s']:8.1f} {out['vggt1b_reconstruct_cpu_s']:7.1f} "
          f"{out['vggt1b_peak_rss_gb']:11.2f}  {out.get('vggt1b_error') or out.get('vggt1b_bundle')}")
    if "sfm_reconstruct_s" in out:
        print(f"{'sfm (default)':22s} {out['sfm_reconstruct_s']:8.1f} {out['sfm_reconstruct_cpu_s']:7.1f} "
              f"{out['sfm_peak_rss_gb']:11.2f}  {out.get('sfm_error') or out.get('sfm_bundle')}")
    for r in out["vggt1b_forward"]:
        print(f"forward {r['frames']} frames at {out['vggt1b_input_size_518']}: {r['s_per_frame']:.1f} s/frame wall, "
              f"{r['cpu_s_per_frame']:.1f} CPU s/frame, peak RSS {r['peak_rss_gb']:.2f} GB")
    out["host"] = machine()
    results = REPO / "benches" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "feedforward.json").write_text(json.dumps(out, indent=1) + "\n")
    if a.json:
        emit_json(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
