"""Split ffmpeg's ``image2pipe`` MJPEG byte stream into single JPEG images.

The stream is a plain concatenation of JPEG files. Searching for ``FF D9`` alone is not enough:
those bytes may occur inside header segments (tables, EXIF), so the splitter walks the marker
segments by their lengths and only scans entropy-coded data, where every ``FF`` byte is stuffed.
"""
from __future__ import annotations

SOI = b"\xff\xd8"
_EOI = 0xD9
_SOS = 0xDA
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class JpegStreamError(ValueError):
    """The byte stream is not a sequence of JPEG images."""


def _scan_entropy(buf: bytes, i: int) -> int:
    """Index of the next real marker (an ``FF`` not followed by ``00``/RSTn/``FF``), or -1."""
    n = len(buf)
    while True:
        i = buf.find(b"\xff", i)
        if i < 0 or i + 1 >= n:
            return -1
        nxt = buf[i + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
            i += 1
            continue
        return i


def jpeg_end(buf: bytes, start: int = 0) -> int:
    """End offset (exclusive) of the JPEG that begins at ``start``; -1 if it is incomplete."""
    if buf[start:start + 2] != SOI:
        raise JpegStreamError(f"no JPEG start marker at offset {start}")
    i = start + 2
    n = len(buf)
    while i < n:
        if buf[i] != 0xFF:
            raise JpegStreamError(f"expected a marker at offset {i}")
        while i < n and buf[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return -1
        marker = buf[i]
        i += 1
        if marker == _EOI:
            return i
        if marker in _STANDALONE:
            continue
        if i + 2 > n:
            return -1
        length = int.from_bytes(buf[i:i + 2], "big")
        if length < 2:
            raise JpegStreamError(f"bad segment length {length} at offset {i}")
        i += length
        if i > n:
            return -1
        if marker == _SOS:
            i = _scan_entropy(buf, i)
            if i < 0:
                return -1
    return -1


def split_jpegs(buf: bytes) -> tuple[list[bytes], bytes]:
    """Complete images in ``buf`` and the incomplete tail (empty when the stream ended cleanly)."""
    images: list[bytes] = []
    pos = 0
    while pos < len(buf):
        end = jpeg_end(buf, pos)
        if end < 0:
            break
        images.append(buf[pos:end])
        pos = end
    return images, buf[pos:]


def jpeg_size(image: bytes) -> tuple[int, int]:
    """``(width, height)`` from the frame header of one JPEG image."""
    i = 2
    n = len(image)
    while i + 4 <= n:
        if image[i] != 0xFF:
            break
        marker = image[i + 1]
        if marker in _STANDALONE or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(image[i + 2:i + 4], "big")
        if marker in _SOF and i + 9 <= n:
            height = int.from_bytes(image[i + 5:i + 7], "big")
            width = int.from_bytes(image[i + 7:i + 9], "big")
            return width, height
        if marker == _SOS:
            break
        i += 2 + length
    raise JpegStreamError("no frame header (SOFn) before the scan")
