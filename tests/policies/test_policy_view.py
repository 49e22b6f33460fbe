"""`twin view BUNDLE --policy RUN --task T`: a trained policy playing its task live in the browser viewer.

A real recording (one Franka reach episode, seed 0, 32 px front and wrist cameras, in the small test bundle), a
tiny ACT trained on it by `twin train`, a real viser server, Newton physics paced to real time on the session's
thread, and Debian's headless Chromium. The overfit policy replays its demonstration at seed 0 (the page says it
succeeded); Reset plays seed 1; the style dropdown replays the seed under a held-out family, restyling the frames
the policy sees.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from support.net import free_port
from support.train_data import record_reach, tiny_train_args, twin_json

STEPS = 150          # enough for the tiny ACT to replay its one demonstration
FAMILY = "light_colour"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The small bundle (scene/), the reach episode (reach/), and the tiny ACT trained on it (runs/reach/)."""
    root = tmp_path_factory.mktemp("policy_view")
    _, dataset = record_reach(root, episodes=1)
    code, res = twin_json(tiny_train_args(dataset, root / "runs" / "reach", "act", STEPS))
    assert code == 0 and res["steps"] == STEPS
    return root


@pytest.fixture(scope="module")
def live(work):
    """The live policy viewer on a free port from seed 0; an ended episode stays shown (no automatic next seed)."""
    from policies.live.session import PlayConfig
    from policies.live.viewer import start_policy_viewer, stop_policy_viewer
    from policies.replay.cli import DatasetViewConfig

    cfg = DatasetViewConfig(bundle=work / "scene", policy=str(work / "runs" / "reach"), task="reach",
                            port=free_port(), thumbnails=False)
    v, view = start_policy_viewer(cfg, PlayConfig(seed=0, next_after=-1.0), announce=False)
    yield v, view
    stop_policy_viewer(v, view)


def wait(cond, timeout: float = 30.0, session=None) -> None:
    t0 = time.monotonic()
    while not cond():
        assert session is None or session.error is None, session.error
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.05)


def test_browser_plays_the_policy_resets_to_the_next_seed_and_restyles(live):
    from policies.replay.viewer import display_image
    from scenes import chromium_page

    v, view = live
    se = view.session
    first = {}          # (episode count, style) -> the first snapshot of that episode (its first policy frame)
    se.subscribe(lambda s: first.setdefault((s.episodes, s.style), s) if s.frames == 1 else None)
    start, drawn0 = se.snapshot, view.body_positions()
    with chromium_page(v.url, 960, 720) as page:
        page.get_by_text("Policy cameras").wait_for(timeout=60_000)
        for name in ("Pause", "Reset"):
            page.get_by_role("button", name=name).wait_for(timeout=30_000)
        assert page.get_by_text("Style").count() >= 1 and page.get_by_text("wrist").count() >= 1
        assert page.locator("img").count() >= 2                       # the front and wrist cameras' frames

        # Seed 0, the demonstration's: the policy reaches the goal, and the page says so
        wait(lambda: se.snapshot.done, session=se)
        end = se.snapshot
        assert end.seed == 0 and end.success and [(r.seed, r.style, r.success) for r in se.results] == [
            (0, "vanilla", True)]
        assert end.steps > 20 and np.abs(end.joint_q - start.joint_q).max() > 0.2, "the joints did not move"
        assert np.abs(view.body_positions() - drawn0).max() > 0.05, "the drawn links did not move"
        page.get_by_text("Succeeded").wait_for(timeout=30_000)

        # Reset: the next seed's episode, from its start
        page.get_by_role("button", name="Reset").click()
        wait(lambda: se.snapshot.seed == 1, session=se)
        assert se.snapshot.episodes == 2 and not se.snapshot.done
        page.get_by_text("seed 1").wait_for(timeout=30_000)
        page.get_by_role("button", name="Pause").click()
        wait(lambda: not se.snapshot.playing, 30)
        page.get_by_role("button", name="Play").wait_for(timeout=30_000)

        # A held-out family: seed 1 again from its start, the policy's frames restyled
        view.gui["style"].value = FAMILY                              # as the browser's dropdown sets it
        wait(lambda: se.snapshot.style == FAMILY, 60, se)
        snap = se.snapshot
        assert snap.seed == 1 and snap.frames == 1 and snap.style_id.startswith("held_out-")
        vanilla = first[(2, "vanilla")]
        assert vanilla.seed == 1 and vanilla.frames == 1
        for cam in ("front", "wrist"):
            a, b = vanilla.images[cam].astype(int), snap.images[cam].astype(int)
            assert a.shape == b.shape == (32, 32, 3) and np.abs(a - b).mean() > 5, cam
        wait(lambda: np.array_equal(view.gui["images"]["front"].image, display_image(snap.images["front"])), 30)
        page.get_by_text(snap.style_id).wait_for(timeout=30_000)
    # left paused: a session playing on through the module's later tests would, on a busy CPU, print its
    # real-time warning into their captured stderr (test_bad_inputs_are_one_line_errors wants only its error)
    assert not se.snapshot.playing


def test_the_live_episode_is_the_one_twin_eval_plays(work, live):
    """Seed 0 in the viewer sends the policy's joint targets that `twin eval --seed 0` sends (equal digests)."""
    from policies import PolicyEvalConfig, run_eval

    se = live[1].session
    wait(lambda: se.results, session=se)
    shown = se.results[0]
    cfg = PolicyEvalConfig(run=str(work / "runs" / "reach"), bundle=str(work / "scene"), task="reach", episodes=1,
                           worlds=1, styles="vanilla", max_videos=0, videos=str(work / "eval"))
    assert run_eval(cfg) == 0
    (ev,) = json.loads((work / "eval" / "results.json").read_text())["episode_results"]
    assert (shown.seed, shown.style, shown.style_id, shown.success) == (0, "vanilla", "vanilla", True)
    assert (ev["seed"], ev["steps"], ev["frames"], ev["digest"]) == (0, shown.steps, shown.frames, shown.digest)


def test_cli_prints_url_first_and_json_last(work, capsys):
    from twin_cli.main import main

    port = free_port()
    assert main(["view", str(work / "scene"), "--policy", str(work / "runs" / "reach"), "--task", "reach",
                 "--episode", "3", "--port", str(port), "--seconds", "0", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"http://127.0.0.1:{port}" and len(lines) == 2, lines
    res = json.loads(lines[1])
    assert res["seed"] == 3 and res["episodes"] == 1 and res["task"] == "reach" and res["robot"] == "franka"
    assert res["style"] == "vanilla"


@pytest.mark.parametrize("args, message", [
    (["--policy", "runs/reach"], "--policy runs/reach: needs --task"),
    (["--policy", "runs/reach", "--task", "reach", "--dataset", "reach"], "--policy and --dataset: choose one"),
    (["--policy", "runs/reach", "--task", "reach", "--sim"], "--policy and --sim: choose one"),
    (["--policy", "runs/nope", "--task", "reach"], "runs/nope: no such run or policy folder"),
    (["--policy", "scene", "--task", "reach"], "scene: neither a run folder"),
    (["--policy", "runs/reach", "--task", "push"], "trained on demonstrations of"),
    (["--task", "reach"], "--task reach: needs --policy"),
])
def test_bad_inputs_are_one_line_errors(work, capsys, monkeypatch, args, message):
    from twin_cli.main import main

    monkeypatch.chdir(work)
    assert main(["view", "scene", *args, "--port", str(free_port()), "--seconds", "0"]) == 2
    out = capsys.readouterr()
    err = " ".join(out.err.split())  # rich wraps long lines
    assert out.out == "" and err.startswith("error:") and err.count("error:") == 1 and message in err, err
    assert "Traceback" not in err
