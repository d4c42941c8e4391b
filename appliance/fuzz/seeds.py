#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (standard library only):
well-formed requests of every shape the appliance takes, from which the
fuzzer mutates. Deterministic; run from this folder."""

import os
import struct


def attr(tag, name, value):
    name = name.encode()
    return bytes([tag]) + struct.pack(">H", len(name)) + name + struct.pack(">H", len(value)) + value


def message(op, attrs, job_attrs=(), document=b""):
    out = struct.pack(">HHI", 0x0200, op, 1) + b"\x01"
    out += b"".join(attrs)
    if job_attrs:
        out += b"\x02" + b"".join(job_attrs)
    return out + b"\x03" + document


URI = b"ipp://127.0.0.1:8631/ipp/print/secure"
BASE = [
    attr(0x47, "attributes-charset", b"utf-8"),
    attr(0x48, "attributes-natural-language", b"en"),
    attr(0x45, "printer-uri", URI),
    attr(0x42, "requesting-user-name", b"alice"),
]
TEXT_WITH_LANGUAGE = struct.pack(">H", 2) + b"en" + struct.pack(">H", 6) + b"report"
MEDIA_COL = [
    attr(0x34, "media-col", b""),
    attr(0x4A, "", b"media-size"),
    attr(0x34, "", b""),
    attr(0x4A, "", b"x-dimension"),
    attr(0x21, "", struct.pack(">i", 21000)),
    attr(0x4A, "", b"y-dimension"),
    attr(0x21, "", struct.pack(">i", 29700)),
    attr(0x37, "", b""),
    attr(0x4A, "", b"media-type"),
    attr(0x44, "", b"stationery"),
    attr(0x37, "", b""),
]

IPP = {
    "print-job": message(
        0x0002,
        BASE + [attr(0x49, "document-format", b"application/pdf"), attr(0x35, "job-name", TEXT_WITH_LANGUAGE)],
        [attr(0x21, "copies", struct.pack(">i", 2)), attr(0x44, "sides", b"two-sided-long-edge")] + MEDIA_COL,
        b"%PDF-1.4\n",
    ),
    "get-jobs": message(
        0x000A,
        BASE + [attr(0x44, "which-jobs", b"all"), attr(0x44, "requested-attributes", b"job-id"), attr(0x44, "", b"job-state")],
    ),
    "get-printer-attributes": message(0x000B, BASE + [attr(0x44, "requested-attributes", b"all")]),
    "cancel-job": message(0x0008, BASE + [attr(0x21, "job-id", struct.pack(">i", 7))]),
    "send-document": message(
        0x0006, BASE + [attr(0x21, "job-id", struct.pack(">i", 7)), attr(0x22, "last-document", b"\x01")], (), b"%!PS-Adobe-3.0\n"
    ),
    "cups-get-printers": message(0x4002, BASE[:2]),
}

API = {
    "login-pin": b"\x00" + b'{"device": "lobby", "method": "pin", "user": "alice", "secret": "1234"}',
    "login-card": b"\x00" + b'{"device": "lobby", "method": "card", "secret": "04:A2:19:FF"}',
    "release-all": b"\x01" + b'{"jobs": "all", "color": "mono", "sides": "two-sided-long-edge", "copies": 2}',
    "release-ids": b"\x01" + b'{"jobs": ["01a22e7c-8885-7446-8b6b-519031dc65fd"]}',
}

for target, seeds in (("ipp_request", IPP), ("api_json", API)):
    folder = os.path.join("corpus", target)
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(folder, "seed-" + name), "wb") as f:
            f.write(data)
