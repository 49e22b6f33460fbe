"""COLMAP's glog output kept off the terminal and out of the shared temp folder.

pycolmap turns on `alsologtostderr` when it loads, so every ERROR line it logs (a failed mapping is routine
when Twin retries another mapper) would break Twin's one-line errors; and glog writes a file per severity
into the system temp folder on every error. Call `quiet_colmap()` before pycolmap runs.
"""
from __future__ import annotations

import os


def quiet_colmap() -> None:
    """Keep pycolmap's log lines off stderr (FATAL aside) and its log files in this process's private temp
    folder (removed at exit), unless GLOG_log_dir names another."""
    import cv2  # noqa: F401 - before pycolmap: the other order aborts cv2's PNG writer (two zlib builds)
    import pycolmap

    from twin_kit import private_temp_dir

    pycolmap.logging.alsologtostderr = False
    pycolmap.logging.stderrthreshold = 3  # FATAL only: glog's severities are INFO 0, WARNING 1, ERROR 2, FATAL 3
    if not os.environ.get("GLOG_log_dir") and pycolmap.logging.log_dir in ("", None):
        pycolmap.logging.log_dir = str(private_temp_dir("glog"))
