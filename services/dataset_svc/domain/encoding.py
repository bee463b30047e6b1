"""Byte-level checks on the upload stream: binary sniffing and UTF-8 as bytes pass.

`ByteSource` lets the format sniffer peek at the first bytes of a non-seekable stream.
`Utf8Stream` sits between it and the parsers: it strips a UTF-8 byte order mark,
decodes incrementally to prove the bytes are UTF-8 (so errors carry a line number and
byte offset), rejects NUL bytes, and counts lines and quote characters on the way.
"""

from __future__ import annotations

import codecs
from typing import BinaryIO

from services.dataset_svc.domain.validation import Issues

BOM = b"\xef\xbb\xbf"
SNIFF_BYTES = 64 * 1024

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"\x7fELF", "an executable"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x80\x04\x95", "a Python pickle"),
    (b"\xd0\xcf\x11\xe0", "an old Office document"),
)

# Python codec names -> the names people know them by.
_FRIENDLY = {
    "latin_1": "ISO-8859-1",
    "iso8859_15": "ISO-8859-15",
    "cp1252": "Windows-1252",
    "cp1250": "Windows-1250",
    "cp1251": "Windows-1251",
    "mac_roman": "Mac Roman",
    "utf_16": "UTF-16",
    "utf_16_le": "UTF-16LE",
    "utf_16_be": "UTF-16BE",
    "shift_jis": "Shift JIS",
    "cp932": "Shift JIS (cp932)",
    "euc_jp": "EUC-JP",
    "gb18030": "GB18030",
    "big5": "Big5",
    "euc_kr": "EUC-KR",
    "koi8_r": "KOI8-R",
}


_SINGLE_BYTE = frozenset({
    "latin_1", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_9", "iso8859_10", "iso8859_13",
    "iso8859_14", "iso8859_15", "iso8859_16", "cp1250", "cp1252", "cp1254", "cp1257",
    "cp1258", "mac_roman", "mac_latin2", "cp437", "cp850", "cp852", "cp858",
})


class ByteSource:
    """A non-seekable stream with `peek` for the first bytes and full-length reads."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._buffer = b""
        self._eof = False
        self.bytes_read = 0  # bytes handed out by read()

    def peek(self, n: int = SNIFF_BYTES) -> bytes:
        """Up to `n` bytes from the current position, without consuming them."""
        while len(self._buffer) < n and not self._eof:
            chunk = self._raw.read(n - len(self._buffer))
            if not chunk:
                self._eof = True
            else:
                self._buffer += chunk
        return self._buffer[:n]

    def read(self, n: int = -1) -> bytes:
        """Exactly `n` bytes unless the stream ends first (b"" at the end)."""
        if n is None or n < 0:
            parts = [self._buffer]
            self._buffer = b""
            while not self._eof:
                chunk = self._raw.read(1 << 20)
                if not chunk:
                    self._eof = True
                else:
                    parts.append(chunk)
            out = b"".join(parts)
        else:
            if len(self._buffer) < n:
                parts = [self._buffer]
                have = len(self._buffer)
                while have < n and not self._eof:
                    chunk = self._raw.read(n - have)
                    if not chunk:
                        self._eof = True
                    else:
                        parts.append(chunk)
                        have += len(chunk)
                self._buffer = b"".join(parts)
            out, self._buffer = self._buffer[:n], self._buffer[n:]
        self.bytes_read += len(out)
        return out


def sniff_binary(head: bytes) -> str | None:
    """Why the first bytes cannot be a text file (None when they may be)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return ("the file is UTF-16 encoded (it starts with a UTF-16 byte order mark); "
                "save it as UTF-8")
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"the file is {what}, not a text dataset"
    sample = head[:4096]
    if b"\x00" in sample:
        even, odd = sample[0::2].count(0), sample[1::2].count(0)
        if len(sample) >= 4 and max(even, odd) > len(sample) // 4 and min(even, odd) * 8 < max(even, odd):
            return "the file looks UTF-16 encoded (every other byte is NUL); save it as UTF-8"
        return ("the file is binary (it contains NUL bytes), not a text dataset; "
                "upload CSV, TSV, JSON Lines, JSON, Parquet or plain text")
    return None


def guess_encoding(sample: bytes) -> str:
    """A human name for the encoding charset-normalizer guesses, e.g. `ISO-8859-1 (latin_1)`."""
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(sample).best()
    except Exception:  # noqa: BLE001 - a guess must never hide the real error
        best = None
    if best is None:
        return ""
    name = best.encoding
    high = sum(b >= 0x80 for b in sample)
    if name in _SINGLE_BYTE and high * 10 < len(sample):
        # Sparse accents in mostly-ASCII text: any single-byte code page "fits" and the
        # detector's pick among them is arbitrary; Western European is by far the likeliest.
        name = "cp1252" if any(0x80 <= b <= 0x9F for b in sample) else "latin_1"
    friendly = _FRIENDLY.get(name, name.upper().replace("_", "-"))
    return f"{friendly} ({name})"


class Utf8Stream:
    """File-like `read(n)` over a `ByteSource` that enforces UTF-8 text as bytes pass.

    Raises `IngestFailed` (through `issues.fatal`) on the first invalid byte or NUL.
    Offsets in messages are 0-based byte offsets in the uploaded file (BOM included);
    lines are 1-based.
    """

    closed = False

    def __init__(self, source: ByteSource, issues: Issues) -> None:
        self._source = source
        self._issues = issues
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._started = False
        self._pending = b""  # bytes of an incomplete UTF-8 sequence at a chunk end
        self.had_bom = False
        self.offset = 0  # bytes consumed from the file, BOM included
        self.newlines = 0  # b"\n" seen so far
        self.quotes = 0  # b'"' seen so far (CSV broken-quote heuristic)
        self.error: BaseException | None = None
        self.at_eof = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def read(self, n: int = -1) -> bytes:
        if not self._started:
            self._started = True
            if self._source.peek(3) == BOM:
                self._source.read(3)
                self.had_bom = True
                self.offset = 3
        chunk = self._source.read(n if n is not None and n >= 0 else -1)
        if not chunk:
            self.at_eof = True
            if self._pending:
                self._fail_decode(b"", final=True)
            return b""
        try:
            self._check(chunk)
        except BaseException as exc:
            self.error = exc
            raise
        self.offset += len(chunk)
        self.newlines += chunk.count(b"\n")
        self.quotes += chunk.count(b'"')
        return chunk

    def read1(self, n: int = -1) -> bytes:
        return self.read(n)

    def _check(self, chunk: bytes) -> None:
        if b"\x00" in chunk:
            pos = chunk.index(b"\x00")
            line = self.newlines + chunk.count(b"\n", 0, pos) + 1
            raise self._issues.fatal(
                line, "", f"NUL byte at offset {self.offset + pos}: the file is binary "
                "or not UTF-8 text (UTF-16?); save it as UTF-8", "BINARY_FILE")
        if not self._pending and chunk.isascii():
            return  # the common case, checked at memory speed
        try:
            self._decoder.decode(chunk)
            self._pending = self._decoder.getstate()[0]
        except UnicodeDecodeError as exc:
            self._fail_decode(chunk, exc=exc)

    def _fail_decode(self, chunk: bytes, *, exc: UnicodeDecodeError | None = None,
                     final: bool = False) -> None:
        data = self._pending + chunk
        if final:
            pos = 0
        else:
            assert exc is not None
            pos = exc.start
        offset = self.offset - len(self._pending) + pos
        line = self.newlines + data.count(b"\n", 0, pos) + 1
        bad = data[pos] if pos < len(data) else 0
        sample = data[max(0, pos - 32768): pos + 32768]
        guess = guess_encoding(sample)
        hint = f"the file looks like {guess} — save it as UTF-8" if guess and "utf_8" not in guess \
            else "save it as UTF-8"
        if final:
            message = f"the file ends inside a UTF-8 character (offset {offset}); {hint}"
        else:
            message = f"byte 0x{bad:02X} at offset {offset} is not valid UTF-8; {hint}"
        err = self._issues.fatal(line, "", message, "NOT_UTF8")
        self.error = err
        raise err
