"""A task as one OpenUSD stage for Isaac Sim / Isaac Lab (`twin export BUNDLE --usd --task T --robot R`).

`prims` writes UsdPhysics prims (scene, materials, rigid bodies, shapes) from a Newton model; `articulation`
the robot as an articulation; `stage` puts a reset of a task (scan, objects, robot) on one stage; `config` is
the `twin export` verb, which hands plain scene exports to scenes' own.
"""
