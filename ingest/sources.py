"""Finding and reading source files: the one walk that ingest and the re-ingest check share.

Rule: symbolic links are followed, to folders and to files, wherever they lead (class folders
are often links to data kept elsewhere). What ingest reads is exactly what `walk` lists, so the
fingerprint `run --data` compares (pipeline/workspace.py) sees a change behind a link too.
Names starting with "." are left out.

What cannot be read as an image file is listed as (path, reason) instead of raising, so ingest
can quarantine it (--skip-bad) or refuse it naming the path: a link loop, a link that leads
nowhere, anything but a regular file (a FIFO would block a reader forever, /dev/zero never
ends), a name that is not valid UTF-8 (the path is shown with its bytes escaped), a file over
the byte limit, content that is not JPEG or PNG.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections.abc import Iterator, Sequence

from ingest.imageinfo import PNG_SIGNATURE, BadImage

JPEG_START = b"\xff\xd8\xff"
_KINDS = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
# What a refused file holds when it is not JPEG or PNG (by its first bytes).
_OTHER_FORMATS = ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
                  (b"\x00\x00\x00\x0cjP", "JPEG 2000"))


class NotReadable(BadImage):
    """A source file that is not read at all: not a regular file, or over the byte limit."""


@dataclasses.dataclass
class Walk:
    """What a folder holds, links followed: the regular files, and what cannot be read."""

    files: list[str] = dataclasses.field(default_factory=list)
    bad: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (shown path, reason)
    links: int = 0  # symbolic links followed


def shown(path: str | os.PathLike) -> str:
    r"""A path as text that encodes as UTF-8: bytes that are not UTF-8 escaped as \xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    """Whether a name read from the file system is valid UTF-8 (else it holds surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def file_kind(mode: int) -> str:
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "regular file" if stat.S_ISREG(mode) else "special file"


def stat_problem(error: OSError, path: str | os.PathLike) -> str:
    """Why an entry could not be followed, as a quarantine reason."""
    if error.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if os.path.islink(path) and error.errno in (errno.ENOENT, errno.ENOTDIR):
        return f"dangling symlink: {error.strerror} (its target {shown(os.readlink(path))})"
    return f"cannot stat: {error.strerror}"


def default_max_file_bytes(max_pixels: int) -> int:
    """The largest file an image under max_pixels plausibly is: an uncompressed 16-bit RGBA PNG
    (8 bytes a pixel, more than any JPEG or compressed PNG of that size needs), plus 16 MiB for
    metadata (EXIF thumbnails, ICC profiles, text chunks).
    """
    return 8 * max_pixels + (16 << 20)


def _loop(ancestor: str) -> str:
    return f"symlink loop: leads back to {shown(ancestor)}"


def _key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def walk(folder: str, above: Sequence[str] = ()) -> Walk:
    """Every visible regular file under folder, in name order, following links.

    A folder met again inside itself (or inside one of `above`, the folders the caller walks
    it from) is a loop: listed as bad, not entered.
    """
    result = Walk()
    for path, problem in iter_walk(folder, above, result):
        if problem is None:
            result.files.append(path)
        else:
            result.bad.append((path, problem))
    return result


def iter_walk(folder: str, above: Sequence[str] = (), counts: Walk | None = None
              ) -> Iterator[tuple[str, str | None]]:
    """`walk` one entry at a time, in the same order: (path, None) for a regular file,
    (shown path, reason) for what cannot be read. Holds one folder's listing per level, never
    the whole tree's files; links followed are counted in counts.links when given.
    """
    counts = Walk() if counts is None else counts
    ancestors: dict[tuple[int, int], str] = {}
    for path in (*above, folder):
        try:
            key = _key(os.stat(path))
        except OSError as e:
            yield shown(path), stat_problem(e, path)
            return
        if key in ancestors:
            yield shown(folder), _loop(ancestors[key])
            return
        ancestors[key] = path
    counts.links += os.path.islink(folder)
    yield from _walk_into(folder, ancestors, counts)


def _walk_into(folder: str, ancestors: dict[tuple[int, int], str], counts: Walk
               ) -> Iterator[tuple[str, str | None]]:
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as e:
        yield shown(folder), f"cannot list folder: {e.strerror}"
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if not is_utf8(entry.name):
            yield shown(entry.path), "name is not valid UTF-8; rename it"
        elif entry.is_file(follow_symlinks=False):  # the common case: no stat call
            yield entry.path, None
        else:
            yield from _follow(entry, ancestors, counts)


def _follow(entry: os.DirEntry, ancestors: dict[tuple[int, int], str], counts: Walk
            ) -> Iterator[tuple[str, str | None]]:
    """A folder, a link or anything else: stat it (through links) and walk or list it."""
    try:
        st = entry.stat()
    except OSError as e:
        yield shown(entry.path), stat_problem(e, entry.path)
        return
    counts.links += entry.is_symlink()
    if stat.S_ISREG(st.st_mode):
        yield entry.path, None
    elif not stat.S_ISDIR(st.st_mode):
        yield shown(entry.path), f"not a regular file ({file_kind(st.st_mode)})"
    elif _key(st) in ancestors:
        yield shown(entry.path), _loop(ancestors[_key(st)])
    else:
        ancestors[_key(st)] = entry.path
        yield from _walk_into(entry.path, ancestors, counts)
        del ancestors[_key(st)]


def other_format(data: bytes) -> str:
    """What a file that is not JPEG or PNG holds, by its first bytes."""
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return "unknown"


def check_content(head: bytes) -> None:
    """Refuses a file whose first bytes are not a JPEG's or a PNG's, before reading the rest."""
    if not (head.startswith(JPEG_START) or head.startswith(PNG_SIGNATURE)):
        raise BadImage(f"not a JPEG or PNG by its content ({other_format(head)}); convert it "
                       "to PNG or JPEG")


def _over(max_bytes: int) -> NotReadable:
    return NotReadable(f"over max_file_bytes ({max_bytes:,} bytes): far larger than an image "
                       "under max_pixels could be; remove it, or raise the limit")


def read_file(path: str, max_bytes: int | None = None, chunk: int = 1 << 16) -> bytes:
    """A whole JPEG or PNG file, refused (BadImage) as soon as it shows it is not one.

    Opened non-blocking and checked on the open descriptor, so a file swapped for a FIFO or a
    device after the walk cannot hang or flood the reader; the first chunk must start like a
    JPEG or PNG before more is read, and reading stops past max_bytes. os.read skips the
    buffered file object, cheaper than open().read() on a small image.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode, size = (st := os.fstat(fd)).st_mode, st.st_size
        if not stat.S_ISREG(mode):
            raise NotReadable(f"not a regular file ({file_kind(mode)})")
        if max_bytes is not None and size > max_bytes:
            raise _over(max_bytes)
        data = os.read(fd, chunk)
        check_content(data)
        if len(data) < chunk:
            return data
        parts, total = [data], len(data)
        while data:
            data = os.read(fd, 1 << 20)
            parts.append(data)
            total += len(data)
            if max_bytes is not None and total > max_bytes:  # the file grew while read
                raise _over(max_bytes)
        return b"".join(parts)
    finally:
        os.close(fd)
