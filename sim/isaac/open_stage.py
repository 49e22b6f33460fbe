"""Open a Twin scene stage in Isaac Sim and step physics; run with Isaac Sim's own Python (not in CI).

    ./python.sh sim/isaac/open_stage.py twins/NAME/scene.usda --steps 240 [--headless] [--probe]

Isaac Sim 6 wheels need Python 3.12 and an RTX GPU, so this script imports only Isaac Sim and OpenUSD
(no Twin modules). `--probe` drops a 5 cm rigid sphere above the collision mesh and prints where it came
to rest: a quick check that the collision mesh is in metres, +Z up and solid. The stage itself is
validated in CI with usd-core (tests/test_usd_export.py).
"""
import argparse
import sys

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("stage", help="scene.usda (or .usdz) written by `twin export --usd`")
parser.add_argument("--steps", type=int, default=240, help="physics frames to step (default 240)")
parser.add_argument("--headless", action="store_true", help="run without a window")
parser.add_argument("--probe", action="store_true", help="drop a rigid sphere onto the collision mesh")
args = parser.parse_args()

from isaacsim import SimulationApp  # noqa: E402  (must start before any omni/pxr import)

app = SimulationApp({"headless": args.headless})

import omni.timeline  # noqa: E402
import omni.usd  # noqa: E402
from pxr import Gf, Usd, UsdGeom, UsdPhysics  # noqa: E402

ctx = omni.usd.get_context()
if not ctx.open_stage(args.stage):
    print(f"error: Isaac Sim could not open {args.stage}", file=sys.stderr)
    app.close()
    sys.exit(2)
try:
    from isaacsim.core.utils.stage import is_stage_loading
except ImportError:  # module layout differs between Isaac Sim releases
    def is_stage_loading() -> bool:
        return False
while ctx.get_stage() is None or is_stage_loading():
    app.update()
stage = ctx.get_stage()
print(f"opened {args.stage}: upAxis={UsdGeom.GetStageUpAxis(stage)} "
      f"metersPerUnit={UsdGeom.GetStageMetersPerUnit(stage)} defaultPrim={stage.GetDefaultPrim().GetPath()}")

probe = None
if args.probe:
    bounds = UsdGeom.BBoxCache(Usd.TimeCode.Default(), [UsdGeom.Tokens.default_, UsdGeom.Tokens.guide])
    box = bounds.ComputeWorldBound(stage.GetPrimAtPath("/World/Collision")).ComputeAlignedRange()
    top = box.GetMidpoint()
    top[2] = box.GetMax()[2] + 0.5
    probe = UsdGeom.Sphere.Define(stage, "/World/TwinProbe")
    probe.CreateRadiusAttr(0.05)
    probe.AddTranslateOp().Set(Gf.Vec3d(top))
    UsdPhysics.CollisionAPI.Apply(probe.GetPrim())
    UsdPhysics.RigidBodyAPI.Apply(probe.GetPrim())

timeline = omni.timeline.get_timeline_interface()
timeline.play()
for _ in range(args.steps):  # each app update advances physics by one frame while the timeline plays
    app.update()
if probe is not None:  # read before stopping: stop() resets bodies to their authored poses
    p = probe.ComputeLocalToWorldTransform(Usd.TimeCode.Default()).ExtractTranslation()
    print(f"probe at ({p[0]:.3f}, {p[1]:.3f}, {p[2]:.3f}) after {args.steps} frames")
timeline.stop()
app.close()
