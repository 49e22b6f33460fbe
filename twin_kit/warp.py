"""Warp settings shared by every stage: quiet logging so stdout keeps only results."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading

_CUDA_WARNING = "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver"
_init_lock = threading.Lock()
_initialised = False


def quiet_warp():
    """Import and initialise Warp with its info logging (init banner, module loads) off, so stdout keeps only
    results, and without the native "CUDA driver not found" warning on machines without CUDA (Warp's C++
    prints it straight to file descriptor 2; anything else printed there during init is passed on).

    Warp 1.19 logs by level (`config.log_level`); older releases read `config.quiet`. Returns the module.
    """
    global _initialised
    import warp as wp

    wp.config.quiet = True
    wp.config.log_level = getattr(wp, "LOG_ERROR", 40)
    with _init_lock:
        if not _initialised:
            _init_without_cuda_warning(wp)
            _initialised = True
    return wp


def _init_without_cuda_warning(wp) -> None:
    """wp.init() with fd 2 captured; the captured text goes back to stderr minus the CUDA-driver warning."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): just initialise
        wp.init()
        return
    with tempfile.TemporaryFile() as cap:
        try:
            os.dup2(cap.fileno(), 2)
            wp.init()
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            cap.seek(0)
            text = cap.read().decode("utf-8", "replace")
    rest = "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith(_CUDA_WARNING))
    if rest:
        sys.stderr.write(rest)
        sys.stderr.flush()
