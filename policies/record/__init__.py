"""Recording: scripted-expert episodes of a task, rendered by the scene's cameras, restyled, and written as a
LeRobotDataset v3.0 (`twin record`). `config` the options, `cameras` each robot's cameras, `rollout` the batched
episodes, `restyling` their appearance, `sink` the dataset in episode order, `shards` Ray workers, `run` the verb.
"""
