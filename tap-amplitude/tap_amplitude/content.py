"""A member's bytes -> its lines: gunzipped, read as they are, or re-encoded, by what they hold.

What a member holds is decided by its first bytes, never by its name (people decompress and
recompress exports with all kinds of tools, and keep the names):

- gzip (magic bytes ``1f 8b``): inflated, several concatenated gzip members allowed, every CRC
  checked (ISA-L's inflate, zlib-compatible and about 2.5x faster); a stream that ends early
  raises ``EOFError``. What it holds is then told the same way: gzip again (a tool gzipped the
  file twice; up to :data:`MAX_GZIP_LAYERS` deep, said in one info line), UTF-16 text, lines.
- UTF-16 or UTF-32 text (its byte-order mark, ``ff fe``, ``fe ff``, ...: what Windows
  PowerShell's ``>`` writes; or without one, its zero bytes, by RFC 4627's rule): read as the
  same text in UTF-8, said in one info line.
- another compression (zip, bzip2, xz, zstd, by their magic bytes): :class:`UnusableContentError`
  (an ``OSError``, so damage of the file to its caller: a stop naming the format and the fix;
  read as lines it would only give garbage).
- anything else is plain JSON lines (a `.json` member of a zip, or a file a browser or tool
  decompressed but kept the `.gz` name of; said in one info line), whatever its first byte:
  ``{``, a blank line, a UTF-8 byte-order mark, ``null``, ``[``, a digit. Each line is then
  judged on its own (lines.py), so nothing but a gzip header is ever read as gzip.

After the last gzip member, zero bytes are padding (some copy and download tools pad files;
GNU gzip ignores them too) and are said in one info line; any other bytes there are not gzip
and not lines: :class:`UnusableContentError`.

Lines are what lies between ``\\n`` bytes (``\\r`` in a member whose lines end in CR alone:
:func:`split_lines`); the last one counts even without a newline after it.
"""

from __future__ import annotations

import codecs
import logging
import zlib
from collections.abc import Iterator
from typing import IO

from isal import isal_zlib

logger = logging.getLogger("tap-amplitude")

GZIP_WBITS = 16 + zlib.MAX_WBITS  # read the gzip wrapper and check its CRC
GZIP_MAGIC = b"\x1f\x8b"
READ_BYTES = 256 * 1024
MAX_GZIP_LAYERS = 3  # gzip inside gzip inside gzip: past that, the bytes are read as they are
# Byte-order marks of the text encodings other than UTF-8 (longest first: UTF-32LE's begins
# with UTF-16LE's).
_WIDE_TEXT = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
# Without a mark: which of the first four bytes are zero (True), RFC 4627's table.
_NO_BOM = (
    ((True, True, True, False), "utf-32-be"),
    ((False, True, True, True), "utf-32-le"),
    ((True, False, True, False), "utf-16-be"),
    ((False, True, False, True), "utf-16-le"),
)
_OTHER_COMPRESSION = (
    (b"PK\x03\x04", "zip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


class UnusableContentError(OSError):
    """A member that cannot be read as lines: compressed with something other than gzip, or
    with bytes after its gzip data; the message says which, and what to do."""


def gunzip_lines(raw: IO[bytes], head: bytes = b"") -> Iterator[bytes]:
    """Lines of a gzip stream, chunk by chunk; ``head``: bytes already read from ``raw``."""
    return split_lines(_inflated(_chunks(raw, head), None))


def member_lines(raw: IO[bytes], where: str) -> Iterator[bytes]:
    """The lines of a member, by what it holds (module docstring); said once when not gzip."""
    return split_lines(content(raw, where), where)


def content(raw: IO[bytes], where: str | None) -> Iterator[bytes]:
    """A member's content, chunk by chunk, as UTF-8 text lines (module docstring). When it is
    not plain gzipped text, one info line says how it is read, naming ``where`` (unless None).
    Raises (while iterated) what reading it raises: damage, or :class:`UnusableContentError`."""
    head = raw.read(READ_BYTES)
    yield from _decoded(head, _chunks(raw), where, 0)


def _decoded(
    head: bytes, rest: Iterator[bytes], where: str | None, gzipped: int
) -> Iterator[bytes]:
    """``head`` then ``rest``, decoded by what ``head`` says; ``gzipped``: layers of gzip
    already taken off (a file gzipped twice, by a tool that gzips whatever it is given)."""
    chunks = _chunks_after(head, rest)
    if head.startswith(GZIP_MAGIC) and gzipped < MAX_GZIP_LAYERS:
        inflated = _inflated(chunks, where)
        inner = _peek(inflated)
        layers = gzipped + 1
        deepest = not inner.startswith(GZIP_MAGIC) or layers == MAX_GZIP_LAYERS
        if deepest and layers > 1 and where is not None:
            logger.info("%s: gzip-compressed %d times; read inside each", where, layers)
        yield from _decoded(inner, inflated, where, gzipped + 1)
        return
    for magic, name in _OTHER_COMPRESSION:
        if head.startswith(magic):
            msg = (
                f"compressed with {name}, not gzip (its first bytes); decompress it (then gzip "
                "it, or leave it as plain JSON lines) and run again"
            )
            raise UnusableContentError(msg)
    gzip_said = "gzip-compressed" if gzipped else "not gzip-compressed"
    wide = _wide_text(head)
    if wide is not None:
        encoding, how = wide
        if where is not None:
            logger.info(
                "%s: %s text (%s), %s; read as the same text in UTF-8",
                where,
                encoding.upper(),
                how,
                gzip_said,
            )
        yield from _as_utf8(chunks, encoding)
        return
    if where is not None and head and not gzipped:
        logger.info("%s: not gzip-compressed; read as plain JSON lines", where)
    yield from chunks


def _peek(chunks: Iterator[bytes]) -> bytes:
    """The first bytes of ``chunks`` (at least 4 unless it ends first), taken from it."""
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= 4:
            break
    return head


def _chunks_after(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def _wide_text(head: bytes) -> tuple[str, str] | None:
    """(codec, how it shows) for UTF-16 or UTF-32 text: by its byte-order mark, or without one
    by where its first character's zero bytes lie (RFC 4627, section 3: JSON text begins with
    an ASCII character). None for anything else."""
    for bom, encoding in _WIDE_TEXT:
        if head.startswith(bom):
            return encoding.lower(), f"byte-order mark {bom.hex(' ')}"
    if len(head) < 4 or head[:4].count(0) not in (2, 3):
        return None
    for pattern, encoding in _NO_BOM:
        if all((byte == 0) == zero for byte, zero in zip(head, pattern, strict=False)):
            return encoding, "no byte-order mark; zero bytes show it"
    return None


def _chunks(raw: IO[bytes], head: bytes = b"") -> Iterator[bytes]:
    if head:
        yield head
    while chunk := raw.read(READ_BYTES):
        yield chunk


def _inflated(chunks: Iterator[bytes], where: str | None) -> Iterator[bytes]:
    """The inflated content of one or more gzip members, then at most zero padding."""
    inflater = isal_zlib.decompressobj(wbits=GZIP_WBITS)
    for chunk in chunks:
        data = inflater.decompress(chunk)
        while inflater.eof and inflater.unused_data:
            rest = inflater.unused_data
            if not rest.startswith(GZIP_MAGIC[: len(rest)]):
                if data:
                    yield data
                _padding(rest, chunks, where)
                return
            inflater = isal_zlib.decompressobj(wbits=GZIP_WBITS)
            data += inflater.decompress(rest)
        if data:
            yield data
    if not inflater.eof:
        msg = "gzip stream ends before its end-of-stream marker (truncated)"
        raise EOFError(msg)


def _padding(rest: bytes, chunks: Iterator[bytes], where: str | None) -> None:
    """Check that what follows the gzip data (``rest``, then ``chunks``) is zero bytes only."""
    size = 0
    for data in (rest, *chunks):
        if data.strip(b"\x00"):
            msg = (
                "bytes after the end of its gzip data that are neither gzip nor zero padding; "
                "its events were read whole, but what follows them cannot be: copy the file "
                "again from the export, or cut it after its gzip data, and run again"
            )
            raise UnusableContentError(msg)
        size += len(data)
    if where is not None:
        logger.info("%s: %d zero bytes after its gzip data (padding), ignored", where, size)


def _as_utf8(chunks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """UTF-16/32 text (its byte-order mark first) as UTF-8. A lone surrogate or a cut code
    unit stays in the bytes as invalid UTF-8, which lines.py repairs visibly (U+FFFD)."""
    decoder = codecs.getincrementaldecoder(encoding)("surrogatepass")
    for chunk in chunks:
        if text := decoder.decode(chunk):
            yield text.encode("utf-8", "surrogatepass")
    try:
        rest = decoder.decode(b"", final=True)
    except UnicodeDecodeError:  # an odd byte at the end: kept as it is, for lines.py to judge
        rest = ""
        yield b"\xff"
    if rest:
        yield rest.encode("utf-8", "surrogatepass")


def split_lines(chunks: Iterator[bytes], where: str | None = None) -> Iterator[bytes]:
    """Lines between ``\\n`` bytes; the last one even without a newline after it. Lines of a
    member whose first line break is a ``\\r`` alone, with no ``\\n`` in its first chunk (the
    classic Mac OS line ending, which some tools still write) are split on ``\\r`` instead,
    said in one info line naming ``where`` (unless None): read on ``\\n``, the whole member
    would be one line, set aside. (JSON has no raw ``\\r`` inside a string: only a line that
    breaks that rule too is cut there.)"""
    tail = b""
    separator = b""
    for data in chunks:
        if not separator:
            if b"\n" in data or b"\r" not in data:
                separator = b"\n" if b"\n" in data else b""
            else:
                separator = b"\r"
                if where is not None:
                    logger.info("%s: lines end in CR alone (classic Mac OS); read so", where)
            if not separator:  # no line break yet
                tail += data
                continue
        lines = (tail + data).split(separator)
        tail = lines.pop()
        yield from lines
    if tail:
        yield tail
