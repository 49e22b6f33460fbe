"""The viewer's time controls for a dynamic bundle: a slider over the capture's time and a play button.

Moving the slider deforms the displayed Gaussians (the same display subset at every time, so nothing flickers)
to that time and sends them in one buffer update; playing advances the slider in real capture time, looping.
"""
from __future__ import annotations

import threading
import time

from scenes.viewer._layers import splat_layer

PLAY_RATE = 8.0  # slider updates per second while playing (each sends the displayed Gaussians once)
MIN_LOOP_SECONDS = 2.0  # a loop lasts the capture's duration in seconds, but at least this long


def time_label(dyn, t: float) -> str:
    units = "s" if dyn.time.units == "seconds" else "frames"
    return f"t = {t:.2f} ({t * dyn.duration:.2f} of {dyn.duration:.2f} {units})"


def add_time_controls(v) -> None:
    """Add the "Time" folder (slider, play/pause, label) when the viewer shows dynamic splats."""
    dyn, layer = v.layers.dynamic, v.layers.splats
    if dyn is None or layer is None or "splats" not in v.handles:
        return
    server = v.server
    with server.gui.add_folder("Time", order=0):
        slider = server.gui.add_slider("Time", min=0.0, max=1.0, step=0.005, initial_value=0.0)
        play = server.gui.add_button("Play")
        label = server.gui.add_markdown(time_label(dyn, 0.0))
    v.gui.update(time=slider, play=play, time_label=label)
    index, n_total = layer.index, layer.n_total
    lock = threading.Lock()
    playing = threading.Event()

    def show(t: float) -> None:
        with lock:
            g = dyn.at(t, index)
            s = splat_layer(g, len(index), index=index, n_total=n_total)
            v.handles["splats"].set_gaussians(s.centers, s.covariances, s.rgbs, s.opacities)
            label.content = time_label(dyn, t)

    slider.on_update(lambda ev: show(float(ev.target.value)))

    def toggle(_ev) -> None:
        if playing.is_set():
            playing.clear()
            play.label = "Play"
        else:
            playing.set()
            play.label = "Pause"

    play.on_click(toggle)
    loop_seconds = max(dyn.duration if dyn.time.units == "seconds" else 0.0, MIN_LOOP_SECONDS)

    def run() -> None:
        while True:
            playing.wait()
            t0 = time.monotonic()
            try:
                slider.value = round((slider.value + 1.0 / (PLAY_RATE * loop_seconds)) % 1.0, 4)
            except Exception:  # noqa: BLE001 - the server was stopped: end quietly
                return
            time.sleep(max(0.0, 1.0 / PLAY_RATE - (time.monotonic() - t0)))

    threading.Thread(target=run, name="twin-view-time", daemon=True).start()
