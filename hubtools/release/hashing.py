"""Content hashes that survive a round trip through the Hub.

``content_hash`` digests the *values* of a table, leaf column by leaf column, so the
hash of the Parquet files a build wrote equals the hash of what ``load_dataset``
returns for them, however either side chunks its record batches. It is vectorised
(Arrow kernels over whole batches), so hashing a million long rows takes seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class _LeafHasher:
    """One running digest per leaf column (list lengths and null masks included)."""

    def __init__(self) -> None:
        self._digests: dict[str, hashlib._Hash] = {}

    def _update(self, path: str, data: bytes | memoryview) -> None:
        digest = self._digests.get(path)
        if digest is None:
            digest = self._digests[path] = hashlib.sha256()
        digest.update(data)

    def add(self, path: str, array: pa.Array) -> None:
        kind = array.type
        self._update(f"{path}#null", pc.is_null(array).cast(pa.uint8()).to_numpy(False).tobytes())
        if pa.types.is_struct(kind):
            for i in range(kind.num_fields):
                self.add(f"{path}.{kind.field(i).name}", pc.struct_field(array, [i]))
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            lengths = pc.fill_null(pc.list_value_length(array), 0).cast(pa.int64())
            self._update(f"{path}#len", lengths.to_numpy(False).tobytes())
            self.add(f"{path}[]", pc.list_flatten(array))
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            values = pc.fill_null(array, "").cast(pa.large_string())
            lengths = pc.binary_length(values).cast(pa.int64())
            self._update(f"{path}#len", lengths.to_numpy(False).tobytes())
            _, offsets, data = values.buffers()
            if data is not None and len(values):
                bounds = np.frombuffer(offsets, dtype=np.int64)
                lo, hi = bounds[values.offset], bounds[values.offset + len(values)]
                self._update(path, memoryview(data)[lo:hi])
        else:
            numeric = pa.types.is_floating(kind) or pa.types.is_integer(kind)
            filled = pc.fill_null(array, pa.scalar(0, kind)) if numeric else array
            self._update(path, filled.to_numpy(zero_copy_only=False).tobytes())

    def hexdigest(self) -> str:
        total = hashlib.sha256()
        for path in sorted(self._digests):
            total.update(f"{path}={self._digests[path].hexdigest()}\n".encode())
        return total.hexdigest()


def content_hash(batches: Iterable[pa.RecordBatch | pa.Table]) -> tuple[int, str]:
    """``(rows, sha256 hex)`` of the rows in ``batches``, independent of how they are chunked."""
    hasher, rows = _LeafHasher(), 0
    for batch in batches:
        if isinstance(batch, pa.Table):
            parts = batch.to_batches()
        else:
            parts = [batch]
        for part in parts:
            rows += part.num_rows
            for name, column in zip(part.schema.names, part.columns, strict=True):
                hasher.add(name, column)
    return rows, hasher.hexdigest()


def parquet_content_hash(paths: Iterable[Path], batch_size: int = 2048) -> tuple[int, str]:
    """``content_hash`` of Parquet files read in order, streamed."""
    import pyarrow.parquet as pq

    def batches():
        for path in paths:
            yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size)

    return content_hash(batches())


def file_digests(path: Path, chunk: int = 1 << 22) -> tuple[str, str]:
    """``(sha256, git blob sha1)`` of a file in one read: the Hub keys LFS files by the
    first and regular files by the second."""
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as file:
        while block := file.read(chunk):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()
