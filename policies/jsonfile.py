"""`read_json`: a JSON file Twin wrote (a dataset's metadata, a policy folder's config), or a one-line error saying
why it cannot be read, for the files a user may hand over damaged or half-copied."""
from __future__ import annotations

import json
from pathlib import Path

from twin_kit import InputError, one_line


def read_json(path: Path):
    """The parsed contents of `path`; an unreadable file or invalid JSON raises InputError naming the file."""
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise InputError(f"{path}: cannot read ({one_line(e)})") from None
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON ({one_line(e)})") from None
