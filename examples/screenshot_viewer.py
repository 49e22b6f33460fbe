"""Save a screenshot of `twin view` for a bundle, taken by headless Chromium (Debian's /usr/bin/chromium).

    python examples/screenshot_viewer.py twins/bird docs/bird_viewer.png [--width 1280 --height 800]

The viewer runs in this process on a free local port; the picture is taken once the scene has drawn.
--hide-gui keeps only the 3D view; --camera N opens on capture camera N instead of the default view.
"""
from __future__ import annotations

import argparse
import socket
import time

from scenes import ViewerOptions, canvas_image, chromium_page, dismiss_notices, fly_to, run_in_thread, wait_for_scene


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("out", help="PNG file to write")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=800)
    p.add_argument("--max-gaussians", type=int, default=300_000)
    p.add_argument("--camera", type=int, default=None, help="fly to this capture camera first")
    p.add_argument("--hide-gui", action="store_true")
    p.add_argument("--no-frustums", action="store_true", help="hide the capture cameras")
    a = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    v, stop = run_in_thread(a.bundle, ViewerOptions(port=port, max_gaussians=a.max_gaussians))
    try:
        if a.no_frustums and "cameras" in v.handles:
            v.handles["cameras"].visible = False
            v.gui["toggle_cameras"].value = False
        with chromium_page(v.url, a.width, a.height) as page:
            wait_for_scene(page, timeout=300)
            if a.camera is not None:
                client = next(iter(v.server.get_clients().values()))
                fly_to(client, v.layers.cameras[a.camera])
                time.sleep(3.0)
                wait_for_scene(page, timeout=300)
            dismiss_notices(page)
            time.sleep(1.0)
            img = canvas_image(page, hide_overlays=True) if a.hide_gui else None
            if img is None:
                page.screenshot(path=a.out)
            else:
                import cv2

                cv2.imwrite(a.out, img[:, :, ::-1])
        print(a.out)
    finally:
        stop.set()


if __name__ == "__main__":
    main()
