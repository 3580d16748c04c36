"""Errors are classified by type, errno, HTTP status or backend error code, never by text.

Issue #13 item 5: a 503 whose request id contains "403", or a timeout on a key containing
"401", used to become "permission denied" (exit 2, never retried). The live cases go
through the real clients (s3fs + botocore against moto, gcsfs against the GCS emulator)
with the fault-injecting proxy of test_storage_cloud answering the backend's own error
documents; the exception objects below are the real botocore / gcsfs classes.
"""

from __future__ import annotations

import errno

import pytest

from mlops.errors import StorageConfigError
from mlops.store.faults import classify
from mlops.store.filesystem import open_store
from mlops.store.versioner import DataVersioner
from tests import _workers
from tests.conftest import Emulator
from tests.test_storage_cloud import FaultProxy, emulator  # noqa: F401  (fixture)

S3_BUSY_403 = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
               b"<Message>Please reduce your request rate (id 403-Forbidden)</Message>"
               b"<RequestId>4034034031401</RequestId></Error>")
GCS_BUSY_403 = b'{"error": {"code": 503, "message": "backend 403 Forbidden 401 busy"}}'
S3_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
             b"<Message>Access Denied</Message><RequestId>1</RequestId></Error>")
GCS_DENIED = b'{"error": {"code": 403, "message": "caller does not have permission"}}'


def _client_error(code: str, status: int, message: str = "") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status,
                                             "RequestId": "403401Forbidden"}}, "GetObject")


def _translated(err: Exception) -> Exception:
    """What s3fs raises for a botocore error (its own translation, cause kept)."""
    from s3fs.errors import translate_boto_error

    return translate_boto_error(err)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("make", "expected"), [
    (lambda: _translated(_client_error("SlowDown", 503, "id 403 Forbidden")), "retry"),
    (lambda: _translated(_client_error("InternalError", 500, "AccessDenied 401")), "retry"),
    (lambda: _translated(_client_error("AccessDenied", 403)), "permission"),
    (lambda: _translated(_client_error("InvalidAccessKeyId", 403)), "permission"),
    (lambda: _translated(_client_error("SomethingNew", 503, "403")), "retry"),
    (lambda: _translated(_client_error("InvalidArgument", 400, "bad")), "permanent"),
    (lambda: _client_error("NoSuchBucket", 404), "bucket"),
    (lambda: TimeoutError("read timed out on key runs/x-401/summary.json"), "retry"),
    (lambda: ConnectionResetError("403 Forbidden"), "retry"),
    (lambda: OSError(errno.EIO, "I/O error on 403"), "retry"),
    (lambda: OSError(errno.EROFS, "Read-only file system"), "permanent"),
    (lambda: OSError(errno.ENOSPC, "No space left on device"), "permanent"),
    (lambda: PermissionError(errno.EACCES, "denied"), "permission"),
    (lambda: RuntimeError("Forbidden 403 401 AccessDenied"), "retry"),
])
def test_classify_by_type_status_and_code(make: object, expected: str) -> None:
    assert callable(make)
    assert classify(make()) == expected


def test_classify_gcsfs_errors() -> None:
    from gcsfs.retry import HttpError, validate_response

    assert classify(HttpError({"code": 503, "message": "request 403 Forbidden"})) == "retry"
    assert classify(HttpError({"code": 401, "message": "Invalid Credentials"})) == "permission"
    assert classify(HttpError({"code": 429, "message": "slow down"})) == "retry"
    with pytest.raises(OSError) as info:  # gcsfs' own way of raising a 403
        validate_response(403, GCS_DENIED, "bucket/key-503")
    assert classify(info.value) == "permission"
    # A message that merely starts like it, but carries an errno, is not a 403.
    assert classify(OSError(errno.EIO, "Forbidden: no")) == "retry"


@pytest.mark.parametrize(("backend", "payload", "ctype", "failures"), [
    ("s3", S3_BUSY_403, "application/xml", 3),
    ("gcs", GCS_BUSY_403, "application/json", 2),
])
def test_503_mentioning_403_is_retried(emulator: Emulator, payload: bytes,  # noqa: F811
                                       ctype: str, failures: int) -> None:
    bucket = emulator.new_bucket()
    with FaultProxy(emulator.endpoint, failures, 503, payload, ctype) as proxy:
        options = {**emulator.options, "endpoint_url": proxy.url}
        versioner = DataVersioner(f"{emulator.scheme}://{bucket}/store/data",
                                  storage_options=options)
        vid = versioner.register(_workers.frame(5))
        assert proxy.failed == failures and proxy.forwarded > 0
    assert versioner.get_latest_version() == vid


@pytest.mark.parametrize(("backend", "payload", "ctype"), [
    ("s3", S3_DENIED, "application/xml"),
    ("gcs", GCS_DENIED, "application/json"),
])
def test_403_is_a_permission_error_not_retried(emulator: Emulator,  # noqa: F811
                                               payload: bytes, ctype: str) -> None:
    bucket = emulator.new_bucket()
    emulator.filesystem().pipe_file(f"{bucket}/store/x", b"1")
    with FaultProxy(emulator.endpoint, 1, 403, payload, ctype) as proxy:
        with pytest.raises(StorageConfigError, match="permission denied"):
            open_store(f"{emulator.scheme}://{bucket}/store",
                       {**emulator.options, "endpoint_url": proxy.url}).read_bytes("x")
        assert proxy.failed == 1 and proxy.forwarded == 0  # no second attempt


def test_ftp_uri_is_bad_configuration() -> None:
    with pytest.raises(StorageConfigError, match=r"unsupported scheme 'ftp://'"):
        open_store("ftp://127.0.0.1/store")
