"""Scoring against references and ground truth: pose AUC / ATE, depth AbsRel, and the `twin demo` run."""
