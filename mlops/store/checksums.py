"""Object checksums: what a data manifest records to verify its object's bytes on load.

A checksum is stored as ``"<algorithm>:<hex digest>"``. New objects get CRC32C
(Castagnoli, the checksum GCS keeps for its objects), computed by ``google-crc32c``
with the CPU's CRC instructions: about 10 GB/s on one core for data in the CPU cache,
so a load that hashes each chunk as it reads it pays little over the read itself
(``make bench`` row B12). Manifests written before it record a sha256
(``DataManifest.object_sha256``), still verified as sha256.

It protects against corruption and accidental swaps (a flipped byte, a truncated
object, another valid Parquet object in its place): not against a writer who can also
rewrite the manifest, which no checksum stored beside the data can.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from mlops.errors import IntegrityError

#: The algorithm of the checksums written now.
ALGORITHM = "crc32c"
#: Algorithms a stored checksum may name (sha256: manifests before ``object_checksum``).
ALGORITHMS = ("crc32c", "sha256")
#: Bytes read and hashed at a time: small enough to stay in the CPU cache between
#: the read that brings them in and the hash (measured on a 481 MB object: 256 KiB took
#: about 12% less CPU than 1 MiB, and 20% less than 4 MiB).
CHUNK = 256 << 10


class Hasher(Protocol):
    """What a checksum accumulates bytes with (hashlib's interface)."""

    def update(self, data: Any, /) -> None:
        """Add bytes."""

    def hexdigest(self) -> str:
        """The checksum of the bytes added so far, as hex."""


class Crc32c:
    """CRC32C with hashlib's ``update``/``hexdigest`` (google-crc32c's C extension)."""

    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: Any) -> None:
        """Add bytes (``bytes``, a pyarrow buffer, or any buffer: wrapped without a copy)."""
        import google_crc32c

        try:
            self._crc = google_crc32c.extend(self._crc, data)
        except TypeError:
            # The C function takes only read-only buffers without a release hook (bytes,
            # pyarrow buffers); a memoryview or bytearray is wrapped by pyarrow, no copy.
            import pyarrow

            self._crc = google_crc32c.extend(self._crc, pyarrow.py_buffer(data))

    def hexdigest(self) -> str:
        """The CRC as 8 hex digits."""
        return f"{self._crc:08x}"


#: CRC32C's polynomial, bit-reversed (as the CRC is computed).
_CRC32C_POLY = 0x82F63B78


def _gf2_times(matrix: list[int], vector: int) -> int:
    out, i = 0, 0
    while vector:
        if vector & 1:
            out ^= matrix[i]
        vector >>= 1
        i += 1
    return out


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, row) for row in matrix]


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC32C of ``a + b`` from the CRC32C of ``a``, of ``b``, and ``len(b)``.

    zlib's ``crc32_combine`` (GF(2) matrix powers: appending ``len2`` zero bytes to
    ``a``), with CRC32C's polynomial; a few thousand integer operations. It lets two
    threads hash the two halves of an object.
    """
    if len2 <= 0:
        return crc1
    one_bit = [_CRC32C_POLY] + [1 << n for n in range(31)]  # the CRC of one more zero bit
    zeros = _gf2_square(_gf2_square(_gf2_square(one_bit)))  # one zero byte
    while len2:  # square and multiply over the bits of len2
        if len2 & 1:
            crc1 = _gf2_times(zeros, crc1)
        len2 >>= 1
        if len2:
            zeros = _gf2_square(zeros)
    return crc1 ^ crc2


def new(algorithm: str) -> Hasher:
    """A fresh hasher of ``algorithm``.

    Raises:
        IntegrityError: An algorithm this release does not know (a later release's).
    """
    if algorithm == "crc32c":
        return Crc32c()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise IntegrityError(f"unknown checksum algorithm '{algorithm}' (known: "
                         f"{', '.join(ALGORITHMS)})")


def of_bytes(data: Any, algorithm: str = ALGORITHM) -> str:
    """The hex checksum of ``data`` (any buffer)."""
    h = new(algorithm)
    h.update(data)
    return h.hexdigest()


def stored(algorithm: str, hexdigest: str) -> str:
    """The stored form of a checksum: ``"<algorithm>:<hex>"``."""
    return f"{algorithm}:{hexdigest}"


def parse(value: str) -> tuple[str, str]:
    """``(algorithm, hex)`` of a stored checksum.

    Raises:
        IntegrityError: Not ``"<algorithm>:<hex>"`` of a known algorithm.
    """
    algorithm, sep, digest = str(value).partition(":")
    if not sep or not digest or algorithm not in ALGORITHMS:
        raise IntegrityError(f"checksum {value!r} is not '<algorithm>:<hex>' with one of "
                             f"{', '.join(ALGORITHMS)}")
    return algorithm, digest


__all__ = ["ALGORITHM", "ALGORITHMS", "CHUNK", "Crc32c", "Hasher", "crc32c_combine", "new",
           "of_bytes", "parse", "stored"]
