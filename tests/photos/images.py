"""Test images made with Pillow, including hostile ones."""

import io
import struct
import zlib

from PIL import Image

GPS_IFD = 0x8825


def jpeg(size: tuple[int, int] = (64, 48), *, gps: bool = False, color: str = "green") -> bytes:
    image = Image.new("RGB", size, color)
    buffer = io.BytesIO()
    if gps:
        exif = Image.Exif()
        exif[0x010F] = "PhoneMaker"  # Make
        # 31°N 121°E, roughly a home in 张堰镇.
        exif.get_ifd(GPS_IFD).update(
            {1: "N", 2: (30.0, 48.0, 12.5), 3: "E", 4: (121.0, 17.0, 44.1)}
        )
        image.save(buffer, "JPEG", exif=exif)
    else:
        image.save(buffer, "JPEG")
    return buffer.getvalue()


def png(size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, (200, 10, 10, 128)).save(buffer, "PNG")
    return buffer.getvalue()


def webp(size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, "WEBP")
    return buffer.getvalue()


def heic(size: tuple[int, int] = (40, 30)) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    Image.new("RGB", size, "yellow").save(buffer, "HEIF")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG header claiming width x height pixels, with a token of data: decoding it fully
    would take gigabytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + _chunk(b"IEND", b"")
    )
