"""`twin view` without a robot: open a bundle in the browser viewer (imports viser only when it runs).

The verb is registered by `policies` (policies/replay/cli.py): sim extends this config with `--sim`
(sim/live/cli.py) and policies with `--dataset`, so that the layers keep pointing down: scenes never imports sim.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twin_kit import opt, validate_config


@dataclass
class ViewConfig:
    """Options of `twin view`."""

    bundle: Path = opt(help="scene bundle directory to show", positional=True)
    host: str = opt("127.0.0.1", "address to bind; 0.0.0.0 shares the viewer on the network")
    port: int = opt(8080, "port to serve on; a port in use is an error (exit 2), never silently changed",
                    low=1, high=65535)
    max_gaussians: int = opt(300_000, "display budget: above it only the most visible Gaussians are sent "
                                      "to the browser (the page says so)", low=1)
    max_points: int = opt(1_000_000, "display budget for the fused point cloud (random subsample above it)",
                         low=0)
    max_frustums: int = opt(300, "at most this many capture cameras are drawn (evenly spaced)", low=0)
    thumbnails: bool = opt(True, "show each capture camera's image on its frustum")
    seconds: float | None = opt(None, "stop after this many seconds (default: serve until Ctrl-C; 0 = check "
                                      "the bundle and port, then stop)", low=0)

    def __post_init__(self):
        validate_config(self)


def run_view(cfg: ViewConfig, json_out: bool = False) -> int:
    """Serve the bundle until Ctrl-C or `cfg.seconds`. The `twin view` verb itself is policies' (see module doc)."""
    from scenes.viewer.server import ViewerOptions, serve_forever, start_viewer
    from twin_kit import emit_json, info

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
