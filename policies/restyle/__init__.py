"""restyle: new appearances for rendered episodes from their control maps (issue 9 section 5).

Style families with disjoint train / held-out splits (`families`), a procedural CPU restyler (`procedural`) and
Cosmos-Transfer 2.5 through diffusers (`cosmos`, GPU, local weights). Names load on first use.
"""
from twin_kit import lazy_exports

_API = {
    **dict.fromkeys(["Style", "VANILLA", "STYLE_FAMILIES", "FAMILIES", "SPLITS", "sample_style", "param_values",
                     "LightIntensity", "LightColour", "Background", "TableTexture", "SurfaceTexture",
                     "CameraEffects", "Distractors"], "families"),
    **dict.fromkeys(["restyle", "restyle_labelled", "Restyled", "SEG_DISTRACTOR"], "procedural"),
    **dict.fromkeys(["CosmosConfig", "load_cosmos", "restyle_cosmos", "control_video", "style_prompt"], "cosmos"),
    **dict.fromkeys(["style_grid"], "preview"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _API)
