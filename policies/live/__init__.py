"""A trained policy played live in the browser viewer: `twin view BUNDLE --policy RUN --task T` (the verb's config is
`policies/replay/cli.py`). `session.py` runs the task's world and the policy on one thread paced to real time;
`viewer.py` draws what it publishes."""
