"""Training (`twin train`): `config` the options, `data` samples from mixed datasets (observation + action chunk),
`frames` the decode-once camera frame cache, `pairs` restyled frames paired with their originals (the consistency
loss), `augment` frame augmentation, `loop` AdamW with warmup + cosine, validation and checkpoints, `checkpoint`
the run folder, `curves` loss curves (JSON + PNG), `dist` torchrun data parallelism, `run` the verb.
"""
