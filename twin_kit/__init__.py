"""twin_kit: what every stage shares without being one: the CLI kit, error types, Warp and torch settings,
rotations and safe file output. It imports no pipeline package; each of them may import it.

Public API (names load on first use, so `import twin_kit` stays cheap):
  cli: Verb, opt, validate_config, add_config_arguments, config_from_namespace, console, emit_json, info, warn,
       progress
  errors: InputError, one_line, user_os_error
  files: check_output_file, check_output_dir, check_parent_writable, destination_lock, staging_dir,
         atomic_output, atomic_write_file, replace_path, sweep_stale, remove_tree, deferred_interrupts,
         make_parents, remove_empty, private_temp_dir
  rotations: qmul, qconj, qrot, qmat, tmul, tinv (xyzw, NumPy), quat_to_rotmat (wxyz), CV_TO_GL
  threads: torch_threads, Prefetch;  warp: quiet_warp;  assets: asset_path (the repo's or installed assets/)
  isolated: IsolatedWorker, WorkerTimeout (a native call in a killable child process, with timeout and retry)
  machine: machine, native_bf16, cpu_model (the host a bench measured on)
"""
from __future__ import annotations

import importlib


def lazy_exports(package: str, api: dict[str, str]):
    """(__getattr__, __dir__, __all__) for a package whose public names live in its submodules.

    `api` maps each public name to the submodule (relative to `package`) that defines it; the submodule is
    imported on first access, so importing the package costs nothing (Newton's cheap, lazy public modules).
    """
    def __getattr__(name: str):
        mod = api.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{mod}"), name)
        globals_ = importlib.import_module(package).__dict__
        globals_[name] = value  # cache: later lookups skip __getattr__
        return value

    def __dir__():
        return sorted(api)

    return __getattr__, __dir__, sorted(api)


_API = {
    **dict.fromkeys(["Verb", "opt", "validate_config", "add_config_arguments", "config_from_namespace", "console",
                     "emit_json", "info", "warn", "progress"], "cli"),
    **dict.fromkeys(["InputError", "one_line", "user_os_error"], "errors"),
    **dict.fromkeys(["check_output_file", "check_output_dir", "check_parent_writable", "destination_lock",
                     "staging_dir", "atomic_output", "atomic_write_file", "replace_path", "sweep_stale",
                     "remove_tree", "deferred_interrupts", "make_parents", "remove_empty", "private_temp_dir"],
                    "files"),
    **dict.fromkeys(["qmul", "qconj", "qrot", "qmat", "tmul", "tinv", "quat_to_rotmat", "CV_TO_GL"], "rotations"),
    **dict.fromkeys(["torch_threads", "Prefetch"], "threads"),
    "quiet_warp": "warp",
    "asset_path": "assets",
    **dict.fromkeys(["IsolatedWorker", "WorkerTimeout"], "isolated"),
    **dict.fromkeys(["machine", "native_bf16", "cpu_model"], "machine"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _API)
__all__ = [*__all__, "lazy_exports"]
