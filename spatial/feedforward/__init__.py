"""Feed-forward geometry: a VGGT-architecture network (frames -> cameras, depth, point maps, tracks in one
pass) in Twin's own code, with the official VGGT-1B state-dict layout so its checkpoints load from a path.

`config` sizes (VGGT-1B, tiny) · `model` the network · `geometry` pose encoding and unprojection ·
`weights` strict checkpoint loading · `preprocess` VGGT's image preparation · `runtime` device and precision
(bf16 trunk / fp32 heads on CUDA) · `chunked` long videos in overlapping windows joined by Sim(3) (`align`),
with `memory` figures · `refine` bundle adjustment on image tracks (pycolmap) · `pipeline` the network stage
of `twin reconstruct --method vggt` · `data`, `losses`, `train`, `heldout` for `twin train-geometry`.
Layers: `backbone` (DINOv2), `aggregator`, `camera_head`, `dpt_head`, `track_head`.
"""
from twin_kit import lazy_exports

_API = {
    **dict.fromkeys(["VGGTConfig", "VGGT_1B", "tiny_config"], "config"),
    **dict.fromkeys(["VGGT", "build_vggt"], "model"),
    **dict.fromkeys(["encode_pose", "decode_pose", "unproject_depth", "matrix_to_quaternion",
                     "quaternion_to_matrix"], "geometry"),
    **dict.fromkeys(["load_vggt", "load_vggt_weights", "save_vggt_weights", "read_state_dict"], "weights"),
    **dict.fromkeys(["prepare_image", "prepare_images"], "preprocess"),
    **dict.fromkeys(["infer", "trunk_autocast"], "runtime"),
    **dict.fromkeys(["Predictions", "predict_sequence", "windows"], "chunked"),
    **dict.fromkeys(["robust_sim3", "weighted_umeyama"], "align"),
    **dict.fromkeys(["RefineConfig", "refine_predictions"], "refine"),
    **dict.fromkeys(["LossWeights", "geometry_loss"], "losses"),
    "train_geometry": "train",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _API)
