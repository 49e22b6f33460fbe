"""spatial: phone capture -> cameras, depth, points and collision mesh (real-to-geometry).

Stages: `capture/` (frames in, synthetic captures, marker sheet) -> `sfm/` (COLMAP mapping, alignment) ->
`dense/` (plane-sweep depth, fusion, mesh) -> the bundle (`bundle.py`, the contract every stage reads;
`bundle_files.py` reads and writes its files).
`interop/` reads and writes other tools' camera formats; `evaluation/` scores against references.
Public API below (loaded on first use): other packages, benches and examples import only these names.
"""
from twin_kit import lazy_exports

__version__ = "0.1.0"

_API = {
    **dict.fromkeys(["Bundle", "BundleError", "BundlePaths", "read_bundle", "staged_bundle", "updating_bundle",
                     "new_manifest", "finalize_manifest", "write_cameras", "read_cameras"], "bundle"),
    **dict.fromkeys(["atomic_write_bytes", "read_points", "write_points", "read_collision_mesh", "read_depth",
                     "write_depth", "CollisionPieces", "read_collision_pieces", "write_collision_pieces",
                     "DynamicRecord", "read_dynamic", "write_dynamic"], "bundle_files"),
    **dict.fromkeys(["ConvexConfig", "convex_components", "decompose", "stored_convex_pieces"], "dense.convex"),
    **dict.fromkeys(["Camera", "look_at"], "cameras"),
    **dict.fromkeys(["Frame", "FrameSet", "FramesConfig", "load_frames"], "capture.frames"),
    **dict.fromkeys(["SynthConfig", "synthesize_capture", "load_ground_truth"], "capture.synth"),
    "add_passer_by": "capture.synth.passerby",
    **dict.fromkeys(["SfmConfig", "run_sfm"], "sfm.mapper"),
    **dict.fromkeys(["MotionMaskConfig", "motion_masks"], "sfm.motion_masks"),
    "quiet_colmap": "sfm.colmap_log",
    **dict.fromkeys(["camera_focus", "up_from_plane_and_cameras"], "sfm.align"),
    **dict.fromkeys(["camera_from_pycolmap", "read_colmap", "write_colmap"], "interop.colmap_io"),
    **dict.fromkeys(["read_transforms", "write_transforms"], "interop.nerfstudio_io"),
    "read_reference": "interop.reference",
    "evaluate_poses": "evaluation.metrics",
    "reconstruct": "reconstruct",
    **dict.fromkeys(["VGGT_1B", "build_vggt", "load_vggt", "prepare_images", "infer"], "feedforward"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _API)
