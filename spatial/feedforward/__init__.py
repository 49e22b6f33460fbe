"""Feed-forward geometry: a VGGT-architecture network (frames -> cameras, depth, point maps, tracks in one
pass) in Twin's own code, with the official VGGT-1B state-dict layout so its checkpoints load from a path.

`config` sizes (VGGT-1B, tiny) · `model` the network · `geometry` pose encoding and unprojection ·
`weights` strict checkpoint loading · `preprocess` VGGT's image preparation · `pipeline` the network stage of
`twin reconstruct --method vggt`. Layers: `backbone` (DINOv2), `aggregator`, `camera_head`, `dpt_head`,
`track_head`.
"""
from twin_kit import lazy_exports

_API = {
    **dict.fromkeys(["VGGTConfig", "VGGT_1B", "tiny_config"], "config"),
    **dict.fromkeys(["VGGT", "build_vggt"], "model"),
    **dict.fromkeys(["encode_pose", "decode_pose", "unproject_depth", "matrix_to_quaternion",
                     "quaternion_to_matrix"], "geometry"),
    **dict.fromkeys(["load_vggt", "load_vggt_weights", "save_vggt_weights", "read_state_dict"], "weights"),
    **dict.fromkeys(["prepare_image", "prepare_images"], "preprocess"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _API)
