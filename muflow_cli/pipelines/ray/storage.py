"""Where a Ray scan's files are: local paths (the same path on every node) or any URI pyarrow.fs reads
(``s3://``, ``gs://``, ``file://``): listing, identity for ``--resume``, and reading one file's bytes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from muflow_cli.inputs.files import shown_path
from muflow_cli.inputs.images import IMAGE_SUFFIXES, iter_image_files
from muflow_cli.pipelines.journal import file_identity

# Bytes above which a file is not fetched into memory: a local one is decoded from disk (which refuses
# a decompression bomb from its header), a remote one gets a too_large row.
MAX_FILE_BYTES = 512 * 2**20


def is_uri(path: str) -> bool:
    """``s3://bucket/key``, ``gs://…``, ``file:///…``: read through pyarrow.fs; anything else is a local path."""
    return "://" in path


_FILESYSTEMS: dict[str, tuple[pafs.FileSystem, int]] = {}


def filesystem(target: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for ``target`` and the path within it (one filesystem object per bucket and
    process: building an S3 one resolves credentials)."""
    if not is_uri(target):
        return pafs.LocalFileSystem(), os.path.abspath(target)
    scheme, rest = target.split("://", 1)
    key = f"{scheme}://{rest.split('/', 1)[0]}"
    if key not in _FILESYSTEMS:
        fs, inner = pafs.FileSystem.from_uri(target)
        at = target.find(inner) if inner else -1
        _FILESYSTEMS[key] = (fs, at if at >= 0 else len(scheme) + 3)  # where the inner path starts in a URI of this bucket
    fs, start = _FILESYSTEMS[key]
    return fs, target[start:].rstrip("/") or "/"


def _uri_files(uri: str) -> Iterator[str]:
    """Image files under a URI, sorted (a URI that names a file, or nothing, is yielded as given: it gets a row)."""
    uri = uri.rstrip("/") if not uri.endswith("://") else uri
    fs, inner = filesystem(uri)
    if fs.get_file_info(inner).type != pafs.FileType.Directory:
        yield uri
        return
    base = uri[: len(uri) - len(inner)]
    found = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    yield from sorted(base + i.path for i in found if i.type == pafs.FileType.File and Path(i.path).suffix.lower() in IMAGE_SUFFIXES)


def list_files(paths: Iterable[str], files_from: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(path to read, name for the table) of every file to scan, in the table's order: local folders walked
    as the local scan walks them (names as given, read by their absolute path, since workers run elsewhere),
    URIs listed through pyarrow.fs; lines of ``--files-from`` are taken as named (URIs: no listing, no stat)."""
    files: list[tuple[str, str]] = []

    def local(p: str) -> list[tuple[str, str]]:
        return local_entries(iter_image_files([Path(p)]))

    for p in paths:
        files += [(u, u) for u in _uri_files(p)] if is_uri(p) else local(p)
    for line in files_from:
        files += [(line, line)] if is_uri(line) else local(line)
    return files


def local_entries(files: Iterable[Path]) -> list[tuple[str, str]]:
    """(path to read, name for the table) of local files: read by their absolute path, since workers run
    elsewhere (another folder, another node on a shared file system); named as given."""
    return [(os.path.abspath(os.fsdecode(f)), shown_path(f)) for f in files]


def identity(path: str, shown: str, info: pafs.FileInfo | None = None) -> list[Any]:
    """What ``--resume`` compares: shown path, size and mtime (ns), as the local journal does; -1 when missing."""
    if not is_uri(path):
        return file_identity(Path(path), shown)
    if info is None:
        fs, inner = filesystem(path)
        info = fs.get_file_info(inner)
    if info.type != pafs.FileType.File:
        return [shown, -1, -1]
    return [shown, info.size, info.mtime_ns if info.mtime_ns is not None else -1]


@dataclass(frozen=True)
class ReadFailure:
    """A file that was not fetched: its row's status and message, as the table shows them."""

    status: str
    message: str


def read_one(path: str, shown: str) -> tuple[bytes | None, ReadFailure | None, list[Any]]:
    """(bytes, failure, identity) of one file. Bytes and failure are both None where the local reader should
    see the file itself (a local file that is not a plain non-empty one, too big, or an OSError): it then
    says what the file is, word for word as a local scan does."""
    if not is_uri(path):
        try:
            st = os.stat(path)
            if stat.S_ISREG(st.st_mode) and 0 < st.st_size <= MAX_FILE_BYTES:
                with open(path, "rb") as fh:
                    return fh.read(), None, [shown, st.st_size, st.st_mtime_ns]
        except OSError:
            pass
        return None, None, identity(path, shown)
    fs, inner = filesystem(path)
    try:
        info = fs.get_file_info(inner)
        ident = identity(path, shown, info)
        if info.type == pafs.FileType.NotFound:
            return None, ReadFailure("unreadable", "file not found"), ident
        if info.type != pafs.FileType.File:
            return None, ReadFailure("unreadable", "not a file"), ident
        if info.size is not None and info.size > MAX_FILE_BYTES:
            return None, ReadFailure("too_large", f"file of {info.size:,} bytes is above the limit of {MAX_FILE_BYTES:,}"), ident
        with fs.open_input_stream(inner) as fh:
            return fh.read(), None, ident
    except (OSError, pa.ArrowException) as exc:
        return None, ReadFailure("unreadable", f"cannot read: {exc}"), [shown, -1, -1]
