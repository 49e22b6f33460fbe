"""policies: demonstrations, datasets, policy training, evaluation and deployment.

`datasets/` writes and reads LeRobotDatasets (v3.0; v2.1 read too). Public API below (loaded on first use):
other packages, benches and examples import only these names.
"""
from twin_kit import lazy_exports

_API = {
    **dict.fromkeys(["Feature", "DatasetSpec", "standard_spec"], "datasets.spec"),
    "DatasetWriter": "datasets.writer",
    **dict.fromkeys(["read_dataset", "LeRobotDatasetView", "EpisodeInfo"], "datasets.reader"),
    "VideoEncoding": "datasets.video",
    **dict.fromkeys(["Style", "VANILLA", "STYLE_FAMILIES", "sample_style", "restyle", "restyle_labelled",
                     "Restyled", "SEG_DISTRACTOR", "CosmosConfig", "load_cosmos", "restyle_cosmos", "style_prompt",
                     "style_grid"], "restyle"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _API)
