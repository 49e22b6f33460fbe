"""Screenshots of a running viewer from headless Chromium (Playwright driving Debian's /usr/bin/chromium).

WebGL runs on SwiftShader (software), which needs --use-angle=swiftshader and --enable-unsafe-swiftshader
in headless mode. Playwright's own browser download is never used.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--use-gl=angle", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]

_MARK_CANVAS_JS = """() => {
  let best = null, area = 0;
  for (const c of document.querySelectorAll('canvas')) {
    const r = c.getBoundingClientRect();
    if (r.width * r.height > area) { best = c; area = r.width * r.height; }
  }
  if (best) best.setAttribute('data-twin-scene', '1');
  return area;
}"""

_HIDE_OVERLAYS_JS = """() => {
  const canvas = document.querySelector('canvas[data-twin-scene]');
  for (const e of document.querySelectorAll('body *')) {
    if (e === canvas || e.contains(canvas) || canvas.contains(e)) continue;
    const st = getComputedStyle(e);
    if ((st.position === 'absolute' || st.position === 'fixed') && st.zIndex !== 'auto') {
      e.setAttribute('data-twin-hidden', e.style.display);
      e.style.display = 'none';
    }
  }
}"""

_SHOW_OVERLAYS_JS = """() => {
  for (const e of document.querySelectorAll('[data-twin-hidden]')) {
    e.style.display = e.getAttribute('data-twin-hidden');
    e.removeAttribute('data-twin-hidden');
  }
}"""


def _kill_browsers() -> None:
    """SIGKILL every Chromium below this process (Playwright's driver starts them), so that a hung page or
    browser makes the waiting Playwright call fail instead of blocking forever."""
    import psutil

    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "chrom" in proc.name():
                proc.kill()


@contextlib.contextmanager
def chromium_page(url: str, width: int = 960, height: int = 720, executable: str = CHROMIUM,
                  deadline: float = 600.0, action_timeout: float = 60.0) -> Iterator[object]:
    """A headless Chromium page opened at `url` (a Playwright Page), closed on exit.

    Every Playwright call waits at most `action_timeout` s, and the browser is killed `deadline` s after launch,
    so a browser or page that hangs (a CI run once hung for over an hour in a browser test) fails the caller's
    current call with Playwright's error instead of blocking it, and the process, forever."""
    from playwright.sync_api import sync_playwright

    if not Path(executable).exists():
        raise FileNotFoundError(executable)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        watchdog = threading.Timer(deadline, _kill_browsers)
        watchdog.daemon = True
        watchdog.start()
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            page.set_default_timeout(action_timeout * 1000)
            page.goto(url, wait_until="domcontentloaded")  # "load" can wait tens of seconds here
            yield page
        finally:
            watchdog.cancel()
            browser.close()


def canvas_image(page, hide_overlays: bool = False, timeout: float = 120.0) -> np.ndarray:
    """The page's (largest) WebGL canvas as an (H, W, 3) uint8 array (GUI panels optionally hidden meanwhile)."""
    import cv2

    if not page.evaluate(_MARK_CANVAS_JS):
        raise RuntimeError("the viewer page has no visible canvas")
    if hide_overlays:
        page.evaluate(_HIDE_OVERLAYS_JS)
    try:
        png = page.locator("canvas[data-twin-scene]").screenshot(timeout=timeout * 1000)
    finally:
        if hide_overlays:
            page.evaluate(_SHOW_OVERLAYS_JS)
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(img[:, :, ::-1])


def dismiss_notices(page, text: str = "Software WebGL rendering detected") -> int:
    """Hide page notifications containing `text` (by default viser's software-WebGL notice); returns count."""
    return page.evaluate("""(text) => {
      let n = 0;
      for (const e of document.querySelectorAll('.mantine-Notification-root')) {
        if (e.textContent.includes(text)) { e.style.display = 'none'; n += 1; }
      }
      return n;
    }""", text)


def wait_for_scene(page, timeout: float = 60.0, min_fraction: float = 0.01, settle: float = 1.0) -> np.ndarray:
    """Poll the canvas until it shows content (>= min_fraction non-white pixels) and stops changing."""
    page.wait_for_selector("canvas", timeout=timeout * 1000)
    t0 = time.monotonic()
    prev = None
    while time.monotonic() - t0 < timeout:
        img = canvas_image(page)
        drawn = float((np.abs(img.astype(np.int16) - 255).max(axis=2) > 24).mean())
        if drawn >= min_fraction and prev is not None and prev.shape == img.shape and \
                np.abs(prev.astype(np.int16) - img).mean() < 0.5:
            return img
        prev = img
        time.sleep(settle)
    raise TimeoutError(f"viewer scene did not appear within {timeout:.0f} s")


def screenshot(url: str, out: str | Path, width: int = 1280, height: int = 800, hide_gui: bool = False,
               timeout: float = 120.0) -> np.ndarray:
    """Open `url`, wait for the scene, and save a PNG of the page (or only the 3D canvas with hide_gui)."""
    import cv2

    with chromium_page(url, width, height) as page:
        wait_for_scene(page, timeout)
        img = canvas_image(page, hide_overlays=True) if hide_gui else _page_image(page)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    cv2.imwrite(str(tmp), img[:, :, ::-1])
    tmp.replace(out)
    return img


def _page_image(page) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(page.screenshot(), np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(img[:, :, ::-1])
