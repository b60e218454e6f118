"""A minimal static Linux ELF for a foreign CPU, so tests can run real foreign code.

The program is three aarch64 instructions: exit(code). Running it on an amd64 host
only works when binfmt_misc hands it to QEMU.
"""

import struct

BASE = 0x400000
EM_AARCH64 = 183


def aarch64_exit(code: int) -> bytes:
    text = struct.pack(
        "<III",
        0xD2800000 | (code << 5),  # movz x0, #code
        0xD2800000 | (93 << 5) | 8,  # movz x8, #93 (exit)
        0xD4000001,  # svc #0
    )
    header_size, phdr_size = 64, 56
    total = header_size + phdr_size + len(text)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        2,
        EM_AARCH64,
        1,
        BASE + header_size + phdr_size,
        header_size,
        0,
        0,
        header_size,
        phdr_size,
        1,
        0,
        0,
        0,
    )
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, total, total, 0x1000)
    return header + phdr + text
