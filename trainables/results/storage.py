"""Files of a sweep folder reached as Ray Tune reaches them: through pyarrow's filesystems, so a URI
(s3://, gs://, file://...) and a local path are read and written the same way.

Every failure of the storage (no network, no such bucket, no credentials, a URI pyarrow cannot
parse) is one SpecError naming the storage with its credentials elided, never a pyarrow traceback.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from trainables.errors import SpecError, redact


MAX_READ = 64 * 2**20  # the files a sweep folder holds are small: a bigger one (or a device behind a link) is
# not read (it would fill the memory)


def is_remote(path: str) -> bool:
    """A URI (s3://, gs://, ...) rather than a path on this machine."""
    return "://" in path


def join(base: str, *parts: str) -> str:
    """base/part/...: a URI's query (s3://bucket/x?endpoint_override=...) stays at its end."""
    head, sep, query = base.partition("?") if is_remote(base) else (base, "", "")
    return "/".join([head.rstrip("/"), *parts]) + sep + query


def filesystem(path: str):
    """(pyarrow filesystem, path in it) for a local path or a URI."""
    import pyarrow.fs

    if is_remote(path):
        with reaching(path):
            return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), path


@contextlib.contextmanager
def reaching(uri: str) -> Iterator[None]:
    """Storage errors inside as one SpecError naming `uri`."""
    try:
        yield
    except Exception as e:
        from pyarrow.lib import ArrowException

        if not isinstance(e, (OSError, ValueError, ArrowException)):  # ArrowInvalid is a ValueError
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SpecError(f"{redact(uri)}: cannot reach the storage: {redact(first[:300])}", path="--storage") from None


def read_text(path: str) -> str | None:
    """The text of the file at path (a URI or a local path); None when there is no file there, or one over
    MAX_READ bytes."""
    fs, inner = filesystem(path)
    with reaching(path):
        return read_in(fs, inner)


def read_in(fs, inner: str) -> str | None:
    """The text of a regular file of at most MAX_READ bytes in a pyarrow filesystem; None otherwise (absent,
    a folder, a FIFO, a sparse 100 GB file that would fill the memory)."""
    import pyarrow.fs

    info = fs.get_file_info(inner)
    if info.type != pyarrow.fs.FileType.File or (info.size or 0) > MAX_READ:
        return None
    with fs.open_input_stream(inner) as f:
        return f.read().decode("utf-8", errors="replace")


def write_text(path: str, text: str) -> None:
    """The file at path (a URI) holds text. Object stores replace an object whole, so a reader sees the
    old text or the new, never half."""
    fs, inner = filesystem(path)
    with reaching(path):
        fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(inner) as f:
            f.write(text.encode("utf-8"))


def names(folder: str) -> list[tuple[str, str, int]]:
    """(name, kind: "Directory", "File", ..., size) of what the folder holds; [] when it does not exist."""
    fs, inner = filesystem(folder)
    with reaching(folder):
        return names_in(fs, inner)


def names_in(fs, inner: str) -> list[tuple[str, str, int]]:
    """names(), in a pyarrow filesystem."""
    import pyarrow.fs

    infos = fs.get_file_info(pyarrow.fs.FileSelector(inner, allow_not_found=True))
    return [(i.base_name, i.type.name, i.size or 0) for i in infos]


def remove(path: str) -> None:
    """The file at path (a URI) gone; nothing when there is none."""
    import pyarrow.fs

    fs, inner = filesystem(path)
    with reaching(path):
        if fs.get_file_info(inner).type == pyarrow.fs.FileType.File:
            fs.delete_file(inner)
