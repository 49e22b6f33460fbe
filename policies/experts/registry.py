"""Which scripted expert solves which task (each one handles every robot its task supports)."""
from __future__ import annotations

from policies.experts.base import Expert
from twin_kit import InputError


def make_expert(env) -> Expert:
    """The privileged scripted expert for `env`'s task, over all of its worlds."""
    from policies.experts.pick_place import pick_place_expert
    from policies.experts.push import push_expert
    from policies.experts.reach import reach_expert

    makers = {"reach": reach_expert, "push": push_expert, "pick_place": pick_place_expert}
    if env.task.name not in makers:
        raise InputError(f"no expert for task {env.task.name!r}; experts: {', '.join(makers)}")
    return makers[env.task.name](env)
