"""Warp settings shared by every stage: quiet logging so stdout keeps only results."""
from __future__ import annotations


def quiet_warp():
    """Import Warp with its info logging (init banner, module loads) off, so stdout keeps only results.

    Warp 1.19 logs by level (`config.log_level`); older releases read `config.quiet`. Returns the module.
    """
    import warp as wp

    wp.config.quiet = True
    wp.config.log_level = getattr(wp, "LOG_ERROR", 40)
    return wp
