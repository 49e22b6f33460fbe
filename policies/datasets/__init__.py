"""datasets: LeRobotDataset v3.0 written by Twin (parquet + mp4, LeRobot's exact layout) and read back
(v3.0 and v2.1). `spec` says what a frame holds, `writer` records episodes atomically, `reader` opens a
dataset, `stats` computes LeRobot's normalisation statistics, `video` encodes and decodes with PyAV."""
from twin_kit import lazy_exports

_API = {
    **dict.fromkeys(["Feature", "DatasetSpec", "standard_spec"], "spec"),
    "DatasetWriter": "writer",
    **dict.fromkeys(["read_dataset", "LeRobotDatasetView", "EpisodeInfo"], "reader"),
    "VideoEncoding": "video",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _API)
