"""spatial: phone capture -> cameras, depth, points and collision mesh (real-to-geometry).

Public API: `Camera`, `look_at`, `read_bundle`, `staged_bundle`, `updating_bundle`, `Bundle`,
`BundleError`, `InputError`; `spatial.reconstruct.reconstruct` runs the whole pipeline.
"""
__version__ = "0.1.0"

from .bundle import Bundle, BundleError, read_bundle, staged_bundle, updating_bundle
from .cameras import Camera, look_at
from .errors import InputError

__all__ = ["Bundle", "BundleError", "Camera", "InputError", "look_at", "read_bundle", "staged_bundle",
           "updating_bundle", "__version__"]
