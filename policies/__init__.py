"""policies: demonstrations, datasets, policy training, evaluation and deployment.

`tasks/` reach, push and pick_place in any metric scan, batched over parallel worlds (`TaskEnv`); `experts/`
privileged scripted experts that solve them; `datasets/` writes and reads LeRobotDatasets (v3.0; v2.1 read
too); `record/` records expert episodes into them (`twin record`); `replay/` shows a recorded episode in the
viewer (`twin view --dataset`); `export/` writes a whole task as one USD stage (`twin export --task`); `act/` and
`flow/` are the policy models (ACT and a π0-style flow-matching expert) over `vision/` (a ResNet-18 or MobileNetV2
image encoder), with `processor.py` (normalisation), `registry.py` (policies by name) and `pretrained.py` (saved policy
folders). Public API below (loaded on first use): other packages, benches and examples import only these names.
"""
from twin_kit import lazy_exports

_API = {
    **dict.fromkeys(["Feature", "DatasetSpec", "standard_spec"], "datasets.spec"),
    "DatasetWriter": "datasets.writer",
    **dict.fromkeys(["read_dataset", "LeRobotDatasetView", "EpisodeInfo"], "datasets.reader"),
    "VideoEncoding": "datasets.video",
    **dict.fromkeys(["Style", "VANILLA", "STYLE_FAMILIES", "sample_style", "restyle", "restyle_labelled",
                     "Restyled", "SEG_DISTRACTOR", "CosmosConfig", "load_cosmos", "restyle_cosmos", "style_prompt",
                     "style_grid"], "restyle"),
    **dict.fromkeys(["TaskConfig", "TaskState", "TaskDef", "TASK_NAMES"], "tasks.spec"),
    "TaskEnv": "tasks.env",
    **dict.fromkeys(["get_task", "task_names", "task_robot_pairs"], "tasks.registry"),
    **dict.fromkeys(["RobotProfile", "PROFILES", "get_profile", "robot_name"], "tasks.robots"),
    **dict.fromkeys(["TaskObject", "load_object"], "tasks.objects"),
    **dict.fromkeys(["Expert", "Waypoint"], "experts.base"),
    "make_expert": "experts.registry",
    **dict.fromkeys(["EvalConfig", "evaluate_pair"], "experts.evaluate"),
    "RecordConfig": "record.config",
    **dict.fromkeys(["Recorder", "Episode", "Layout", "record_episodes", "joint_names"], "record.rollout"),
    **dict.fromkeys(["Restyler", "episode_style"], "record.restyling"),
    **dict.fromkeys(["run_record", "check_record"], "record.run"),
    # policy models (act/, flow/), their shared parts, registry and saved-policy folders
    **dict.fromkeys(["PolicyFeatures", "policy_features", "STATE", "ACTION", "IMAGES", "IMAGE_PREFIX",
                     "ACTION_IS_PAD"], "features"),
    **dict.fromkeys(["Normalize", "Preprocessor", "Postprocessor", "action_chunks"], "processor"),
    **dict.fromkeys(["PolicyConfig", "config_from_json", "NORM_MODES"], "configuration"),
    **dict.fromkeys(["PretrainedPolicy", "save_policy", "load_policy"], "pretrained"),
    **dict.fromkeys(["policy_names", "config_class", "policy_class", "make_config", "make_policy"], "registry"),
    **dict.fromkeys(["ResNet", "load_resnet_weights", "feature_size"], "vision.resnet"),
    **dict.fromkeys(["MobileNetV2", "load_mobilenet_weights", "packaged_mobilenet_weights"], "vision.mobilenet"),
    **dict.fromkeys(["ImageEncoder", "sinusoidal_2d"], "vision.encoder"),
    "ImagePreprocess": "vision.preprocess",
    "ACTConfig": "act.configuration_act",
    "ACTPolicy": "act.modeling_act",
    "TemporalEnsembler": "act.ensemble",
    "FlowConfig": "flow.configuration_flow",
    "FlowPolicy": "flow.modeling_flow",
    **dict.fromkeys(["prefix_weights", "guided_velocity"], "flow.rtc"),
    # training (train/): `twin train`, its samples and run folders
    "TrainConfig": "train.config",
    **dict.fromkeys(["train_policy", "run_train"], "train.run"),
    **dict.fromkeys(["ChunkDataset", "StepSampler"], "train.data"),
    **dict.fromkeys(["run_policy", "RunPaths"], "train.checkpoint"),
    # evaluation and export (evaluate/): `twin eval`, `twin export-policy`
    **dict.fromkeys(["PolicyEvalConfig", "PolicyExportConfig"], "evaluate.config"),
    **dict.fromkeys(["run_eval", "check_eval"], "evaluate.run"),
    **dict.fromkeys(["EvalStyle", "parse_styles", "wilson_interval"], "evaluate.styles"),
    **dict.fromkeys(["export_onnx", "read_onnx_meta", "run_export_policy"], "evaluate.export"),
    **dict.fromkeys(["TorchRuntime", "OnnxRuntime"], "evaluate.runtime"),
    "FrameRestyler": "evaluate.restyling",
    # the policy server (runtime/): `twin serve`, openpi's wire format, Twin's client
    **dict.fromkeys(["ServedPolicy", "load_served"], "runtime.policy"),
    "PolicyServer": "runtime.server",
    **dict.fromkeys(["PolicyClient", "ServerError"], "runtime.client"),
    # the robot side (runtime/): the control loop, its inference worker and the simulated robot
    **dict.fromkeys(["LoopConfig", "run_episode", "measure_rate"], "runtime.loop"),
    "InferenceWorker": "runtime.inference",
    "SimAdapter": "runtime.robots.sim",
    "G1Adapter": "runtime.robots.g1",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _API)
