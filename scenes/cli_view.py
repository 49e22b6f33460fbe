"""`twin view`: open a bundle in the browser viewer (imports viser only when it runs)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spatial.cli_tools import Verb, opt


@dataclass
class ViewConfig:
    """Options of `twin view`."""

    bundle: Path = opt(help="scene bundle directory to show", positional=True)
    host: str = opt("127.0.0.1", "address to bind; 0.0.0.0 shares the viewer on the network")
    port: int = opt(8080, "port to serve on; a port in use is an error (exit 2), never silently changed")
    max_gaussians: int = opt(300_000, "display budget: above it only the most visible Gaussians are sent "
                                      "to the browser (the page says so)")
    max_points: int = opt(1_000_000, "display budget for the fused point cloud (random subsample above it)")
    max_frustums: int = opt(300, "at most this many capture cameras are drawn (evenly spaced)")
    thumbnails: bool = opt(True, "show each capture camera's image on its frustum")
    seconds: float | None = opt(None, "stop after this many seconds (default: serve until Ctrl-C)")
    sim: bool = opt(False, "also simulate a robot in the scene (Newton) and show it moving; needs the bundle's "
                           "collision mesh and a metric scale or --scale")
    robot: str = opt("franka", "with --sim: robot (franka, so100, so101, ur5e, g1, g1_hands, aloha)")
    scale: float | None = opt(None, "with --sim: metres per scene unit (required when the scale is arbitrary)")
    solver: str | None = opt(None, "with --sim: physics solver, as for `twin sim` (default: its default)")


def run_view(cfg: ViewConfig, json_out: bool = False) -> int:
    if cfg.sim:  # the robot comes from the sim package, imported only for --sim
        import importlib

        return importlib.import_module("sim.live_view").run_view_sim(cfg, json_out)
    from spatial.cli_tools import emit_json, info

    from .viewer import ViewerOptions, serve_forever, start_viewer

    opts = ViewerOptions(host=cfg.host, port=cfg.port, max_gaussians=cfg.max_gaussians,
                         max_points=cfg.max_points, max_frustums=cfg.max_frustums, thumbnails=cfg.thumbnails)
    v = start_viewer(cfg.bundle, opts, announce=True)
    s = v.layers.splats
    shown = f"{len(s.index):,} of {s.n_total:,} Gaussians" if s is not None else "no splats (points and mesh)"
    info(f"serving {v.bundle.root} ({shown}); Ctrl-C to stop")
    serve_forever(v, cfg.seconds)
    if json_out:
        emit_json({"url": v.url, "gaussians_total": s.n_total if s else 0,
                   "gaussians_shown": len(s.index) if s else 0})
    return 0


VERBS = [Verb("view", ViewConfig, run_view, "open a scene bundle in the browser viewer (viser)")]
