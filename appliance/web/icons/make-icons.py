#!/usr/bin/env python3
"""Draws the queue icons IPP clients show (printer-icons): a printer with a
sheet and a padlock-coloured panel, at 48, 128 and 512 pixels, as PNG.
Run from this directory; the PNGs are committed beside it."""
import struct
import zlib


def png(size, pixel):
    rows = b"".join(
        b"\0" + b"".join(bytes(pixel(x / size, y / size)) for x in range(size))
        for y in range(size)
    )

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def inside(x, y, left, top, right, bottom):
    return left <= x < right and top <= y < bottom


def printer(x, y):
    if inside(x, y, 0.28, 0.10, 0.72, 0.42):          # the sheet going in
        return (250, 250, 250, 255)
    if inside(x, y, 0.10, 0.36, 0.90, 0.78):          # the body
        if inside(x, y, 0.66, 0.44, 0.82, 0.52):      # the release panel
            return (46, 160, 90, 255)
        return (52, 64, 84, 255)
    if inside(x, y, 0.24, 0.70, 0.76, 0.92):          # the sheet coming out
        return (235, 238, 242, 255)
    return (0, 0, 0, 0)


for size in (48, 128, 512):
    with open(f"printer-{size}.png", "wb") as out:
        out.write(png(size, printer))
