"""`twin serve`: a trained policy behind a websocket in openpi's wire format. The real `openpi-client` package
(PyPI 0.1.2) and Twin's own client read the metadata frame, build observations from it alone, and get the same
actions as a direct call; several clients are served at once; malformed requests get a one-line text-frame error
and the server goes on; /healthz answers; off loopback a token is required and checked; the command starts,
answers and stops cleanly on Ctrl-C. Tiny untrained ACT and flow policies on the tiny recorded dataset."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch
from openpi_client import msgpack_numpy
from openpi_client import websocket_client_policy as openpi
from support.policy_data import CHUNK, PYTHON, REPO, training_batch, write_policy_dataset
from support.policy_data import TINY_64 as TINY
from support.train_data import twin_json

from policies import (
    PolicyClient,
    PolicyServer,
    ServerError,
    export_onnx,
    load_policy,
    load_served,
    make_policy,
    read_dataset,
)
from policies.runtime import WireError, pack, unpack
from twin_kit import InputError, torch_threads

SAMPLES = [(0, 0), (0, 6), (0, 12), (1, 3), (1, 9)]
TOKEN = "s3cret-token-42"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The tiny dataset, an ACT and a flow policy saved as run folders, and the ACT's ONNX export in its run."""
    from policies.evaluate.runs import weights_digest

    d = tmp_path_factory.mktemp("serve")
    root = write_policy_dataset(d / "ds")
    with torch_threads(1):
        for kind, cfg in TINY.items():
            torch.manual_seed(0)
            make_policy(kind, cfg, read_dataset(root)).eval().save_pretrained(d / "runs" / kind / "policy")
        policy_dir = d / "runs" / "act" / "policy"
        export_onnx(load_policy(policy_dir), d / "runs" / "act" / "policy.onnx", weights_digest(policy_dir))
    return d


@pytest.fixture(scope="module")
def act(work):
    return load_served(work / "runs" / "act", "onnx")


@pytest.fixture(scope="module")
def server(act):
    with PolicyServer(act, port=0) as srv:
        yield srv


def observations(work: Path, meta: dict) -> list[dict]:
    """Recorded observations, built from the metadata frame's keys, shapes and dtypes alone."""
    raw = training_batch(work / "ds", CHUNK, SAMPLES)
    out = []
    for i in range(len(SAMPLES)):
        obs = {}
        for key, spec in meta["observation"].items():
            obs[key] = np.ascontiguousarray(raw[key][i].numpy(), dtype=spec["dtype"]).reshape(spec["shape"])
        out.append(obs)
    return out


def test_wire_format_is_openpis_byte_for_byte():
    obj = {"observation.state": np.arange(4, dtype=np.float32), "img": np.zeros((2, 3, 3), np.uint8),
           "big": np.arange(6, dtype=">i8").reshape(2, 3), "t": np.arange(4.0)[::2], "n": np.int16(-3),
           "x": np.float64(2.5), "nested": {"a": [1, "b", np.ones(2, np.bool_)]}, "prompt": "pick"}
    frame = pack(obj)
    assert frame == msgpack_numpy.packb(obj)
    for back in (unpack(frame), msgpack_numpy.unpackb(frame), unpack(msgpack_numpy.packb(obj))):
        assert back["big"].dtype == np.dtype(">i8") and type(back["n"]) is np.int16 and back["n"] == -3
        assert back["x"] == 2.5 and back["prompt"] == "pick"
        for k in ("observation.state", "img", "big", "t"):
            np.testing.assert_array_equal(back[k], obj[k])
        np.testing.assert_array_equal(back["nested"]["a"][2], np.ones(2, np.bool_))
    assert unpack(frame)["img"].flags.writeable
    with pytest.raises(WireError, match="object"):
        pack({"a": np.array([None, 1], dtype=object)})
    tag = {b"__ndarray__": True, b"data": b"\0" * 7, b"dtype": "<f4", b"shape": [2]}
    for bad, why in ((msgpack.packb(tag), "needs 8 bytes"), (msgpack.packb({**tag, b"dtype": "|O"}), "refused"),
                     (msgpack.packb({**tag, b"dtype": "nope"}), "not a NumPy dtype"),
                     (msgpack.packb({**tag, b"shape": [-1]}), "non-negative"), (b"\xc1", "malformed")):
        with pytest.raises(WireError, match=why):
            unpack(bad)


def test_openpi_client_and_twins_client_get_the_direct_actions(work, act, server):
    client = openpi.WebsocketClientPolicy(host="127.0.0.1", port=server.port)
    meta = client.get_server_metadata()
    assert meta["policy_type"] == "act" and meta["runtime"] == "onnx" and meta["fps"] == 10
    assert meta["chunk_length"] == CHUNK and meta["action"] == {"shape": [CHUNK, 4], "dtype": "float32",
                                                                "names": [f"joint{i}" for i in range(4)]}
    assert meta["observation"]["observation.state"]["shape"] == [4]
    assert meta["observation"]["observation.images.front"] == {"shape": [64, 64, 3], "dtype": "uint8"}
    assert set(meta["observation"]) == {"observation.state", "observation.images.front", "observation.images.wrist"}
    twin = PolicyClient(server.url)
    assert twin.metadata == meta
    chunks = []
    for obs in observations(work, meta):
        want = act.infer(obs)
        got = client.infer({**obs, "prompt": "sweep"})  # extra keys (an openpi prompt) are ignored
        assert got["actions"].shape == (CHUNK, 4) and got["actions"].dtype == np.float32
        np.testing.assert_allclose(got["actions"], want, atol=1e-5)
        assert got["server_timing"]["infer_ms"] > 0
        np.testing.assert_allclose(twin.infer(obs)["actions"], want, atol=1e-5)
        chunks.append(want)
    assert np.abs(chunks[0] - chunks[-1]).max() > 1e-4  # the observation matters
    twin.close()
    client._ws.close()


def test_two_clients_are_served_at_once(work, act, server):
    obs = observations(work, server.metadata)
    wants = [act.infer(o) for o in obs]
    clients = [openpi.WebsocketClientPolicy(host="127.0.0.1", port=server.port), PolicyClient(server.url)]
    errors: list[str] = []
    done = []

    def play(c, order):
        for _ in range(3):
            for i in order:
                if not np.allclose(c.infer(obs[i])["actions"], wants[i], atol=1e-5):
                    errors.append(f"{type(c).__name__} sample {i}")
        done.append(c)

    threads = [threading.Thread(target=play, args=(c, o)) for c, o in zip(clients, ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0]),
                                                                               strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(done) == 2 and not errors
    clients[0]._ws.close()
    clients[1].close()


def test_malformed_requests_get_a_one_line_error_and_the_server_goes_on(work, server):
    from websockets.sync.client import connect

    good = observations(work, server.metadata)[1]
    other = PolicyClient(server.url)  # a second client, served between the bad requests
    nan = {**good, "observation.state": np.array([0, np.nan, 0, 0], np.float32)}
    bad = [(b"\x93\xff garbage", "malformed msgpack"), (pack([1, 2]), "map of observation keys"),
           (pack({k: v for k, v in good.items() if k != "observation.images.wrist"}), "missing observation.images.wr"),
           (pack({**good, "observation.images.front": good["observation.images.front"][:32]}), "shape (32, 64, 3)"),
           (pack({**good, "observation.state": good["observation.state"].astype(np.float64)}), "dtype float64"),
           (pack({**good, "observation.state": [0.0, 0.0, 0.0, 0.0]}), "expected a float32 array"),
           (pack(nan), "NaN"), ("a text frame", "binary msgpack")]
    with connect(server.url, compression=None, max_size=None) as ws:
        assert unpack(ws.recv(10))["policy_type"] == "act"
        for frame, why in bad:
            ws.send(frame)
            err = ws.recv(10)
            assert isinstance(err, str) and why in err and "\n" not in err, (why, err)
            ws.send(pack(good))
            assert unpack(ws.recv(10))["actions"].shape == (CHUNK, 4)
            assert other.infer(good)["actions"].shape == (CHUNK, 4)
    with pytest.raises(ServerError, match="dtype float64"):
        other.infer({**good, "observation.state": good["observation.state"].astype(np.float64)})
    assert other.infer(good)["actions"].shape == (CHUNK, 4)  # a refused request leaves the connection usable
    other.close()


def test_healthz_answers_200(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as r:
        assert r.status == 200 and r.read() == b"OK\n"


def test_off_loopback_needs_a_token(work, act):
    with pytest.raises(InputError, match="--host 0.0.0.0 is not a loopback address: serving it needs --token"):
        PolicyServer(act, host="0.0.0.0", port=0)
    code, res = twin_json(["serve", str(work / "runs" / "act"), "--host", "0.0.0.0", "--port", "0"])
    assert code == 2 and "needs --token" in res["error"]


def test_a_token_keeps_out_clients_without_it(work, act):
    from websockets.exceptions import InvalidStatus

    obs = observations(work, act.metadata())[2]
    want = act.infer(obs)
    with PolicyServer(act, host="0.0.0.0", port=0, token=TOKEN) as srv:
        url = f"ws://127.0.0.1:{srv.port}"
        for token in (None, "wrong-token-00"):
            with pytest.raises(ServerError, match="HTTP 401: missing or wrong token"):
                PolicyClient(url, token=token)
            with pytest.raises(InvalidStatus):
                openpi.WebsocketClientPolicy(host="127.0.0.1", port=srv.port, api_key=token)
        client = openpi.WebsocketClientPolicy(host="127.0.0.1", port=srv.port, api_key=TOKEN)
        np.testing.assert_allclose(client.infer(obs)["actions"], want, atol=1e-5)
        client._ws.close()
        with PolicyClient(url, token=TOKEN) as twin:
            np.testing.assert_allclose(twin.infer(obs)["actions"], want, atol=1e-5)


def test_flow_policy_takes_noise_and_a_chunking_prefix(work):
    flow = load_served(work / "runs" / "flow", "torch", seed=3)
    meta = flow.metadata()
    assert meta["policy_type"] == "flow" and meta["runtime"] == "torch"
    assert meta["optional"]["noise"] == {"shape": [CHUNK, 4], "dtype": "float32"} and meta["rtc_vjp"] is True
    obs = observations(work, meta)[3]
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((CHUNK, 4)).astype(np.float32)
    prefix = rng.standard_normal((5, 4)).astype(np.float32)
    with PolicyServer(flow, port=0) as srv, PolicyClient(srv.url) as client:
        got = client.infer({**obs, "noise": noise, "prefix_actions": prefix, "prefix_len": 2})["actions"]
        np.testing.assert_allclose(got, flow.infer({**obs, "noise": noise, "prefix_actions": prefix,
                                                    "prefix_len": 2}), atol=1e-5)
        np.testing.assert_allclose(got[:2], prefix[:2], atol=1e-4)  # committed actions land on the prefix
        a, b = client.infer(obs)["actions"], client.infer(obs)["actions"]
        assert np.abs(a - b).max() > 1e-3  # no noise given: a fresh draw per request
        with pytest.raises(ServerError, match=r"prefix_len: must be an integer in \[0, 5\]"):
            client.infer({**obs, "prefix_actions": prefix, "prefix_len": 6})
        with pytest.raises(ServerError, match=r"noise: shape \(4, 4\)"):
            client.infer({**obs, "noise": noise[:4]})


def test_twin_serve_starts_answers_and_stops_on_ctrl_c(work, act):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([PYTHON, "-m", "twin_cli", "serve", "runs/act/policy.onnx", "--port", "0", "--json"],
                            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line, t0 = "", time.monotonic()
        while "serving" not in line and time.monotonic() - t0 < 120 and proc.poll() is None:
            if select.select([proc.stderr], [], [], 0.5)[0]:
                line = proc.stderr.readline()
        assert "serving the act policy" in line, proc.stderr.read() if proc.poll() is not None else line
        port = int(line.split("ws://127.0.0.1:")[1].split(" ")[0])
        client = openpi.WebsocketClientPolicy(host="127.0.0.1", port=port)
        obs = observations(work, client.get_server_metadata())[0]
        np.testing.assert_allclose(client.infer(obs)["actions"], act.infer(obs), atol=1e-5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    res = json.loads(out.strip().splitlines()[-1])
    assert res["requests"] == 1 and res["errors"] == 0 and res["clients"] == 1
    assert "stopped: 1 requests" in err and "Traceback" not in err


def test_the_runtime_imports_no_training_code(work):
    code = ("import sys; from policies.runtime import load_served, PolicyServer, PolicyClient\n"
            f"load_served({str(work / 'runs' / 'act')!r}, 'onnx'); load_served({str(work / 'runs' / 'flow')!r}, "
            "'torch')\nprint(sorted(m for m in sys.modules if m.startswith('policies.train')))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
