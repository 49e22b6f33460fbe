"""Errors that mean "the user's input is bad": the CLI prints them on one line and exits with 2."""
from __future__ import annotations

import errno

# OS errors that are about the user's paths or machine, not a bug: reported on one line like an InputError.
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG,
               errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENOTEMPTY, errno.EXDEV, errno.ENOENT,
               errno.ELOOP, errno.EBUSY, errno.ETXTBSY}


class InputError(ValueError):
    """Bad input: missing or corrupt files, too few images, no overlap, wrong formats, NaNs."""


def one_line(e: BaseException) -> str:
    """The message of an error as one line: the first line of its text (or its type), OS errors as
    'PATH: reason'."""
    if isinstance(e, OSError) and e.strerror:
        where = e.filename if e.filename is not None else ""
        msg = f"{where}: {e.strerror.lower()}" if where else e.strerror.lower()
    else:
        msg = str(e)
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def user_os_error(e: BaseException) -> bool:
    """Whether an OSError is about the user's paths or machine (permissions, read-only, full disk...)."""
    return isinstance(e, OSError) and e.errno in USER_ERRNOS
