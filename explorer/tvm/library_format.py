"""What a measurement bundle's libraries are made of, without TVM: the request that compiles one, and
the layout of the serialized module tree ``export_library`` embeds (``__tvm_ffi__library_bin``), read
and rewritten to carry a cubin compiled here instead of CUDA source.

Both :mod:`explorer.measure` (which plans a bundle) and :mod:`explorer.tvm.bundle` (which compiles its
libraries) use these; neither imports the other's side.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

from explorer.core.errors import ExplorerError


@dataclasses.dataclass(frozen=True)
class LibraryRequest:
    """Compile one variant into ``out``."""

    model_path: str
    model_sha256: str
    strategy: object                  # explorer.core.strategies.Strategy
    lowering: str                     # "cuda" or "generic"
    out: str
    arch: str = ""                    # cuda: e.g. sm_90
    act_scales: tuple[float, ...] | None = None
    inline_limit: int | None = None   # lift constants of at least lift_min_bytes to parameters where the
    lift_min_bytes: int = 4096        # constants add up to more than this (None: never)
    draws: dict | None = None         # sha256 of an array's bytes -> (zoo draw index, transform)


def _u64(data: bytes, at: int) -> tuple[int, int]:
    return struct.unpack_from("<Q", data, at)[0], at + 8


def parse_library_blob(blob: bytes) -> tuple[list[list[int]], list[tuple[str, bytes | None]]]:
    """The module tree of an exported library's serialized blob (``__tvm_ffi__library_bin``): the import
    tree's two index vectors and ``(kind, payload)`` per module (``_lib``, the host library, has none)."""
    size, at = _u64(blob, 0)
    if size != len(blob) - 8:
        raise ValueError(f"library blob says {size} bytes, holds {len(blob) - 8}")
    vectors = []
    for _ in range(2):
        n, at = _u64(blob, at)
        vectors.append(list(struct.unpack_from(f"<{n}Q", blob, at)))
        at += 8 * n
    modules: list[tuple[str, bytes | None]] = []
    for _ in range(len(vectors[0]) - 1):
        n, at = _u64(blob, at)
        kind = blob[at:at + n].decode()
        at += n
        if kind == "_lib":
            modules.append((kind, None))
            continue
        n, at = _u64(blob, at)
        modules.append((kind, blob[at:at + n]))
        at += n
    if at != len(blob):
        raise ValueError(f"library blob has {len(blob) - at} bytes after its last module")
    return vectors, modules


def write_library_blob(vectors: list[list[int]], modules: list[tuple[str, bytes | None]]) -> bytes:
    """The inverse of :func:`parse_library_blob`."""
    body = b"".join(struct.pack("<Q", len(v)) + struct.pack(f"<{len(v)}Q", *v) for v in vectors)
    for kind, payload in modules:
        body += struct.pack("<Q", len(kind)) + kind.encode()
        if payload is not None:
            body += struct.pack("<Q", len(payload)) + payload
    return struct.pack("<Q", len(body)) + body


def cuda_payload_format(payload: bytes) -> str:
    """The format a serialized CUDA module states (``cuda`` for source, ``cubin``, ``ptx``, ``fatbin``)."""
    n, at = _u64(payload, 0)
    return payload[at:at + n].decode()


def cubin_payload(payload: bytes, source: str, cubin: bytes) -> bytes:
    """A serialized CUDA module (format, function table, code: TVM's CUDA module layout) holding ``cubin``
    where it held ``source``."""
    fmt = cuda_payload_format(payload)
    code = source.encode()
    if fmt != "cuda" or not payload.endswith(code) or _u64(payload, len(payload) - len(code) - 8)[0] != len(code):
        raise ValueError(f"unexpected CUDA module layout (format {fmt!r}): TVM's serialization changed?")
    fmap = payload[8 + len(fmt):len(payload) - len(code) - 8]
    return struct.pack("<Q", 5) + b"cubin" + fmap + struct.pack("<Q", len(cubin)) + cubin


def library_blob(path: str | Path, symbol: str = "__tvm_ffi__library_bin") -> bytes:
    """The serialized module tree an exported library carries (read from its ELF symbol table, without
    loading it)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ExplorerError(f"{path} is not a 64-bit little-endian ELF library")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    for sec in sections:
        if sec[1] not in (2, 11):  # SHT_SYMTAB, SHT_DYNSYM
            continue
        strtab = sections[sec[6]]
        for j in range(sec[5] // 24):
            name, _, _, shndx, value, size = struct.unpack_from("<IBBHQQ", data, sec[4] + j * 24)
            start = strtab[4] + name
            if data[start:data.index(b"\0", start)] == symbol.encode():
                owner = sections[shndx]
                at = owner[4] + value - owner[3]
                return data[at:at + size]
    raise ExplorerError(f"{path} has no {symbol}: not a library TVM exported")


def library_modules(path: str | Path) -> list[tuple[str, str, int]]:
    """``(kind, format, bytes)`` of every module an exported library carries (format: a CUDA module's
    ``cuda``/``cubin``/..., else '')."""
    _, modules = parse_library_blob(library_blob(path))
    return [(kind, cuda_payload_format(p) if kind == "cuda" and p else "", len(p) if p else 0) for kind, p in modules]
