"""runtime: a trained policy on a robot; imports no training code.

`wire` openpi's msgpack NumPy encoding; `policy` a run or ONNX export answering one observation with an action
chunk; `server` `twin serve` (openpi's websocket protocol, several clients, token off loopback); `client` Twin's
client for it; `safety` joint/velocity/acceleration/torque limits, workspace box and step limit between policy
and robot; `watchdog` hold -> controlled stop when actions go stale; `chunks` the chunk broker (temporal
ensembling, real-time chunking, sync); `robot` the adapter interface every robot meets; `robots/` the adapters
(sim, franka, g1); `loop` the fixed-rate control loop with asynchronous inference (`inference`), `episodes` the
LeRobot recording of each deployment with its safety events, `deploy` the `twin deploy` verb.
"""
from twin_kit import lazy_exports

_API = {
    **dict.fromkeys(["pack", "unpack", "WireError"], "wire"),
    **dict.fromkeys(["ServedPolicy", "load_served"], "policy"),
    "ServeConfig": "config",
    **dict.fromkeys(["PolicyServer", "run_serve", "check_bind"], "server"),
    **dict.fromkeys(["PolicyClient", "ServerError"], "client"),
    **dict.fromkeys(["RobotLimits", "robot_limits", "urdf_limits", "mjcf_limits", "SafetyConfig", "SafetyFilter",
                     "SafetyEvent", "limit_margin"], "safety"),
    **dict.fromkeys(["Watchdog", "stop_trajectory", "RUN", "HOLD", "STOP"], "watchdog"),
    **dict.fromkeys(["ChunkBroker", "BrokerConfig", "ChunkRequest", "Chunk"], "chunks"),
    **dict.fromkeys(["RobotAdapter", "RobotState"], "robot"),
    **dict.fromkeys(["LoopConfig", "run_episode", "measure_rate", "EpisodeLog"], "loop"),
    **dict.fromkeys(["InferenceWorker", "open_source"], "inference"),
    **dict.fromkeys(["DeployRecorder", "read_events"], "episodes"),
    **dict.fromkeys(["DeployConfig", "run_deploy"], "deploy"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _API)
