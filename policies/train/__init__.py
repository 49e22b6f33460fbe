"""Training (`twin train`): `config` the options, `data` samples from mixed datasets (observation + action chunk),
`frames` the decode-once camera frame cache, `loop` AdamW with warmup + cosine, validation and checkpoints,
`checkpoint` the run folder, `curves` loss curves (JSON + PNG), `dist` torchrun data parallelism, `run` the verb.
"""
