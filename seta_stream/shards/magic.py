"""The file type of a blob of bytes, from its first bytes (its "magic number").

Binary table columns carry no file name; the extension found here names their field
(`COL.EXT`), so that the default decoder decodes images by it.
"""

from __future__ import annotations


def sniff(data: bytes) -> str:
    """`jpg`, `png`, `webp`, `gif`, `wav`, `flac`, `mp3`, `ogg`, `mp4`, or `bin` if none."""
    head = bytes(data[:12])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "mp3"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"
    return "bin"
