"""`twin view`'s sim options: the browser viewer of a bundle, with `--sim` a robot simulated live in it (Newton).

The verb is registered by policies (policies/replay/cli.py), which extends this config with `--dataset`; the
layers keep pointing down: sim never imports policies.
"""
from __future__ import annotations

from dataclasses import dataclass

from scenes import ViewConfig
from sim.physics.world import SOLVERS
from twin_kit import opt


@dataclass
class SimViewConfig(ViewConfig):
    """Options of `twin view`: the static viewer's, plus the live robot's."""

    sim: bool = opt(False, "also simulate a robot in the scene (Newton) and show it moving; needs the bundle's "
                           "collision mesh and a metric scale or --scale")
    robot: str = opt("franka", "with --sim: robot (franka, so100, so101, ur5e, g1, g1_hands, aloha)")
    scale: float | None = opt(None, "with --sim: metres per scene unit (required when the scale is arbitrary)",
                              low=0, low_open=True)
    solver: str | None = opt(None, "with --sim: physics solver, as for `twin sim` (default: its default)",
                             choices=SOLVERS)

    def viewer_options(self):
        """The scenes viewer's options of these (address, port, display budgets, thumbnails)."""
        from scenes import ViewerOptions

        return ViewerOptions(host=self.host, port=self.port, max_gaussians=self.max_gaussians,
                             max_points=self.max_points, max_frustums=self.max_frustums, thumbnails=self.thumbnails)


def run_view(cfg: SimViewConfig, json_out: bool = False) -> int:
    """`twin view` without --dataset: the live robot with --sim, else the static viewer."""
    if cfg.sim:
        from sim.live.viewer import run_view_sim

        return run_view_sim(cfg, json_out)
    from scenes import run_view as run_static_view

    return run_static_view(cfg, json_out)

