"""Backend error classification: whether a retry may fix a storage error.

:func:`classify` decides by exception type, errno, HTTP status or the backend's error
code (botocore's ``Error.Code``, gcsfs' ``HttpError.code``), never by message text;
:class:`~mlops.store.filesystem.Store` translates by it (see its module docstring).
"""

from __future__ import annotations

import errno

#: OS error numbers that no retry can fix: the store itself refuses the operation.
PERMANENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC,
                              errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EINVAL,
                              errno.EDQUOT, errno.ELOOP})
#: S3 error codes (the ``Code`` of the error response) that mean no permission or bad
#: credentials; s3fs maps most of them to PermissionError already, this is the rest.
S3_PERMISSION_CODES = frozenset({"AccessDenied", "AccountProblem", "AllAccessDisabled",
                                 "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                                 "InvalidToken", "NotSignedUp", "InvalidSecurity",
                                 "RequestTimeTooSkewed", "InvalidPayer"})
#: HTTP statuses after which a retry may succeed; every other 4xx is permanent.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


def _backend_fault(err: BaseException) -> tuple[int | None, str | None]:
    """The HTTP status and backend error code behind ``err``, from its cause chain.

    botocore's ``ClientError`` (the cause s3fs keeps when it translates) carries
    ``response["Error"]["Code"]`` and ``response["ResponseMetadata"]["HTTPStatusCode"]``;
    gcsfs' ``HttpError`` carries the status as ``code``. Both are read as attributes,
    so this module does not import either library.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            error = response.get("Error") or {}
            meta = response.get("ResponseMetadata") or {}
            status = meta.get("HTTPStatusCode")
            code = error.get("Code")
            return (int(status) if isinstance(status, int) else None,
                    str(code) if code is not None else None)
        code_attr = getattr(current, "code", None)
        if type(current).__name__ == "HttpError" and isinstance(code_attr, int):
            return code_attr, None
        current = current.__cause__ or current.__context__
    return None, None


def _gcsfs_forbidden(err: BaseException) -> bool:
    """gcsfs raises a bare ``OSError("Forbidden: <path>...")`` for HTTP 403 (no errno, no
    status attribute, no cause): the one case recognised by form. It is anchored on
    gcsfs' own fixed prefix and the missing errno, never on text the server sent."""
    return (type(err) is OSError and err.errno is None and len(err.args) == 1
            and isinstance(err.args[0], str) and err.args[0].startswith("Forbidden: "))


def classify(err: BaseException) -> str:
    """Whether a retry may fix ``err``: ``"retry"``, ``"permission"``, ``"bucket"`` or
    ``"permanent"``.

    Decided by the exception's type, its errno, the HTTP status or the backend's error
    code (see :func:`_backend_fault`), never by searching its message.
    """
    status, code = _backend_fault(err)
    if isinstance(err, PermissionError) or code in S3_PERMISSION_CODES \
            or status in (401, 403) or _gcsfs_forbidden(err):
        return "permission"
    if code == "NoSuchBucket":
        return "bucket"
    if status is not None:
        if status >= 500 or status in RETRYABLE_STATUSES:
            return "retry"
        if 400 <= status < 500:
            return "permanent"
    if isinstance(err, TimeoutError | ConnectionError):
        return "retry"
    if isinstance(err, OSError) and err.errno in PERMANENT_ERRNOS:
        return "permanent"
    if isinstance(err, TypeError | ValueError | NotImplementedError):
        # Bad arguments from storage.options, or a request the backend calls malformed.
        return "permanent"
    return "retry"
