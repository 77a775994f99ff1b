"""Ad-hoc code signatures for Mach-O files, in pure Python.

arm64 macOS kills a process that maps a page whose hash does not match its code signature, and
every load-command edit changes the first page. Apple's `codesign` exists only on macOS; neither
macholib nor lief can sign. So sharewheel writes the same ad-hoc signature `codesign -s -` does:
an embedded SuperBlob with a SHA-256 CodeDirectory (one hash per 4 KiB page up to the
signature), an empty requirements set and an empty CMS wrapper, placed at the end of
__LINKEDIT and named by LC_CODE_SIGNATURE. Format: Apple TN3126 "Inside Code Signing: Hashes"
and xnu's osfmk/kern/cs_blobs.h.

Each slice of a universal file is signed on its own bytes; slices are laid out again (at their
alignment) because a signature may grow.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from sharewheel.errors import SharewheelError
from sharewheel.files import replacing

PAGE_SIZE_LOG2 = 12  # codesign hashes 4 KiB pages on every architecture
CSMAGIC_EMBEDDED_SIGNATURE = 0xFADE0CC0
CSMAGIC_CODEDIRECTORY = 0xFADE0C02
CSMAGIC_REQUIREMENTS = 0xFADE0C01
CSMAGIC_BLOBWRAPPER = 0xFADE0B01
CSSLOT_CODEDIRECTORY, CSSLOT_REQUIREMENTS, CSSLOT_SIGNATURESLOT = 0, 2, 0x10000
CS_ADHOC = 0x2
CS_HASHTYPE_SHA256 = 2
CS_EXECSEG_MAIN_BINARY = 0x1
CD_VERSION = 0x20400  # with execSeg fields
CD_HEADER_SIZE = 88
LC_SEGMENT, LC_SEGMENT_64, LC_CODE_SIGNATURE = 0x1, 0x19, 0x1D
MH_EXECUTE, MH_DYLIB, MH_DYLINKER, MH_BUNDLE = 0x2, 0x6, 0x7, 0x8
CPU_TYPE_ARM64 = 0x0100000C
FAT_MAGIC, FAT_MAGIC_64 = 0xCAFEBABE, 0xCAFEBABF
THIN_MAGICS = {0xFEEDFACE: ("<", False), 0xFEEDFACF: ("<", True), 0xCEFAEDFE: (">", False), 0xCFFAEDFE: (">", True)}
EMPTY_REQUIREMENTS = struct.pack(">III", CSMAGIC_REQUIREMENTS, 12, 0)
EMPTY_CMS_WRAPPER = struct.pack(">II", CSMAGIC_BLOBWRAPPER, 8)


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


@dataclass
class _Layout:
    """What signing needs from one thin Mach-O: where things are, as byte offsets."""

    endian: str
    is64: bool
    cputype: int
    filetype: int
    ncmds: int
    sizeofcmds: int
    header_size: int
    first_content: int  # where section data starts: load commands must end before it
    text: tuple[int, int]  # __TEXT fileoff, filesize
    linkedit_cmd: int  # offset of the __LINKEDIT segment command
    linkedit: tuple[int, int, int]  # fileoff, filesize, vmsize
    signature_cmd: int | None  # offset of LC_CODE_SIGNATURE
    signature: tuple[int, int] | None  # dataoff, datasize


def _layout(data: bytes, where: str) -> _Layout:
    try:
        magic = struct.unpack_from("<I", data)[0]
        endian, is64 = THIN_MAGICS[magic]
        cputype, _, filetype, ncmds, sizeofcmds = struct.unpack_from(endian + "iIIII", data, 4)
        header_size = 32 if is64 else 28
        first_content = len(data)
        text = linkedit = None
        linkedit_cmd = signature_cmd = None
        signature = None
        offset = header_size
        for _ in range(ncmds):
            cmd, cmdsize = struct.unpack_from(endian + "II", data, offset)
            if cmdsize < 8 or offset + cmdsize > header_size + sizeofcmds:
                raise ValueError(f"load command at {offset} has size {cmdsize}")
            if cmd in (LC_SEGMENT, LC_SEGMENT_64):
                fmt, section_fmt = ("16sQQQQiiII", "16s16sQQIIIIIIII") if cmd == LC_SEGMENT_64 else (
                    "16sIIIIiiII", "16s16sIIIIIIIII")
                name, _, vmsize, fileoff, filesize, _, _, nsects, _ = struct.unpack_from(endian + fmt, data, offset + 8)
                name = name.rstrip(b"\0")
                section = offset + 8 + struct.calcsize(fmt)
                for _ in range(nsects):
                    fields = struct.unpack_from(endian + section_fmt, data, section)
                    size, file_offset, flags = fields[3], fields[4], fields[8]
                    if file_offset and size and (flags & 0xFF) not in (0x1, 0xC, 0x12):  # not zerofill
                        first_content = min(first_content, file_offset)
                    section += struct.calcsize(section_fmt)
                if name == b"__TEXT":
                    text = (fileoff, filesize)
                elif name == b"__LINKEDIT":
                    linkedit, linkedit_cmd = (fileoff, filesize, vmsize), offset
                elif filesize and fileoff and not nsects:
                    first_content = min(first_content, fileoff)
            elif cmd == LC_CODE_SIGNATURE:
                signature_cmd = offset
                signature = struct.unpack_from(endian + "II", data, offset + 8)
            offset += cmdsize
    except (KeyError, struct.error, ValueError) as e:
        raise SharewheelError(f"{where}: malformed Mach-O file ({e})") from None
    if text is None or linkedit is None or linkedit_cmd is None:
        raise SharewheelError(f"{where}: Mach-O file without __TEXT or __LINKEDIT cannot be signed")
    return _Layout(endian, is64, cputype, filetype, ncmds, sizeofcmds, header_size, first_content,
                   text, linkedit_cmd, linkedit, signature_cmd, signature)


def _super_blob(identifier: bytes, hashes: list[bytes], code_limit: int, layout: _Layout) -> bytes:
    special = hashlib.sha256(EMPTY_REQUIREMENTS).digest() + bytes(32)  # slot 2, slot 1 (no Info.plist)
    ident_offset = CD_HEADER_SIZE
    hash_offset = ident_offset + len(identifier) + 1 + len(special)
    length = hash_offset + 32 * len(hashes)
    exec_flags = CS_EXECSEG_MAIN_BINARY if layout.filetype == MH_EXECUTE else 0
    code_directory = struct.pack(
        ">IIIIIIIIIBBBBIIIIQQQQ",
        CSMAGIC_CODEDIRECTORY, length, CD_VERSION, CS_ADHOC, hash_offset, ident_offset,
        2, len(hashes), code_limit if code_limit < 2**32 else 0,
        32, CS_HASHTYPE_SHA256, 0, PAGE_SIZE_LOG2, 0,
        0, 0, 0, code_limit if code_limit >= 2**32 else 0,
        layout.text[0], layout.text[1], exec_flags,
    ) + identifier + b"\0" + special + b"".join(hashes)
    blobs = [(CSSLOT_CODEDIRECTORY, code_directory), (CSSLOT_REQUIREMENTS, EMPTY_REQUIREMENTS),
             (CSSLOT_SIGNATURESLOT, EMPTY_CMS_WRAPPER)]
    offset = 12 + 8 * len(blobs)
    index = b""
    for slot, blob in blobs:
        index += struct.pack(">II", slot, offset)
        offset += len(blob)
    return struct.pack(">III", CSMAGIC_EMBEDDED_SIGNATURE, offset, len(blobs)) + index + b"".join(b for _, b in blobs)


def _blob_size(identifier: bytes, code_limit: int) -> int:
    pages = math.ceil(code_limit / (1 << PAGE_SIZE_LOG2))
    return 12 + 8 * 3 + CD_HEADER_SIZE + len(identifier) + 1 + 64 + 32 * pages + len(EMPTY_REQUIREMENTS) + len(EMPTY_CMS_WRAPPER)


def sign_slice(data: bytes, identifier: str, where: str) -> bytes:
    """A thin Mach-O with a fresh ad-hoc signature (replacing any signature it had)."""
    layout = _layout(data, where)
    if layout.filetype not in (MH_EXECUTE, MH_DYLIB, MH_DYLINKER, MH_BUNDLE):
        return data
    e = layout.endian
    body = bytearray(data)
    linkedit_off, linkedit_size, linkedit_vmsize = layout.linkedit
    if layout.signature is not None and layout.signature_cmd is not None:
        code_limit = layout.signature[0]
        signature_cmd = layout.signature_cmd
    else:
        code_limit = _align(linkedit_off + linkedit_size, 16)
        signature_cmd = layout.header_size + layout.sizeofcmds
        if signature_cmd + 16 > layout.first_content:
            raise SharewheelError(f"{where}: no room in the Mach-O header for a code signature load command")
        struct.pack_into(e + "II", body, 16, layout.ncmds + 1, layout.sizeofcmds + 16)
    ident = identifier.encode()
    datasize = _align(_blob_size(ident, code_limit), 16)
    del body[code_limit:]
    body.extend(bytes(code_limit - len(body)))
    struct.pack_into(e + "IIII", body, signature_cmd, LC_CODE_SIGNATURE, 16, code_limit, datasize)
    filesize = code_limit + datasize - linkedit_off
    page = 0x4000 if layout.cputype == CPU_TYPE_ARM64 else 0x1000
    vmsize = max(linkedit_vmsize, _align(filesize, page))
    if layout.is64:
        struct.pack_into(e + "QQ", body, layout.linkedit_cmd + 8 + 16 + 8, vmsize, linkedit_off)
        struct.pack_into(e + "Q", body, layout.linkedit_cmd + 8 + 16 + 24, filesize)
    else:
        struct.pack_into(e + "III", body, layout.linkedit_cmd + 8 + 16 + 4, vmsize, linkedit_off, filesize)
    page_size = 1 << PAGE_SIZE_LOG2
    hashes = [hashlib.sha256(body[i : min(i + page_size, code_limit)]).digest() for i in range(0, code_limit, page_size)]
    blob = _super_blob(ident, hashes, code_limit, layout)
    return bytes(body) + blob + bytes(datasize - len(blob))


def slices(data: bytes, where: str) -> list[tuple[tuple[int, ...], bytes]] | None:
    """The (fat_arch fields, bytes) of each slice of a universal file; None for a thin file."""
    if len(data) < 8:
        raise SharewheelError(f"{where}: truncated Mach-O file")
    magic, count = struct.unpack_from(">II", data)
    if magic not in (FAT_MAGIC, FAT_MAGIC_64):
        return None
    entry = ">iiQQII" if magic == FAT_MAGIC_64 else ">iiIII"
    result = []
    for i in range(count):
        try:
            fields = struct.unpack_from(entry, data, 8 + i * struct.calcsize(entry))
        except struct.error:
            raise SharewheelError(f"{where}: truncated universal (fat) header") from None
        offset, size = fields[2], fields[3]
        if offset + size > len(data):
            raise SharewheelError(f"{where}: slice {i} extends past the end of the file (truncated?)")
        result.append((fields, data[offset : offset + size]))
    return result


def sign_file(path: Path, identifier: str | None = None) -> None:
    """Ad-hoc sign every slice of `path` in place (written to a temporary file, then renamed)."""
    where = str(path)
    data = path.read_bytes()
    identifier = identifier or path.name
    parts = slices(data, where)
    if parts is None:
        result = sign_slice(data, identifier, where)
    else:
        magic = struct.unpack_from(">I", data)[0]
        entry = ">iiQQII" if magic == FAT_MAGIC_64 else ">iiIII"
        header = bytearray(struct.pack(">II", magic, len(parts)))
        signed = [(fields, sign_slice(body, identifier, where)) for fields, body in parts]
        offset = 8 + len(parts) * struct.calcsize(entry)
        layout = []
        for fields, body in signed:
            align = fields[4]
            offset = _align(offset, 1 << align)
            layout.append((fields, offset, body))
            header += struct.pack(entry, fields[0], fields[1], offset, len(body), *fields[4:])
            offset += len(body)
        fat = bytearray(header)
        for _, start, body in layout:
            fat.extend(bytes(start - len(fat)))
            fat.extend(body)
        result = bytes(fat)
    if result != data:
        _replace(path, result)


def signature_is_valid(path: Path) -> bool:
    """Whether every slice's CodeDirectory page hashes match its bytes (used by delocate's validate_signature)."""
    data = path.read_bytes()
    parts = slices(data, str(path)) or [((), data)]
    for _, body in parts:
        layout = _layout(body, str(path))
        if layout.signature is None:
            continue
        dataoff, _ = layout.signature
        try:
            magic, _, count = struct.unpack_from(">III", body, dataoff)
            if magic != CSMAGIC_EMBEDDED_SIGNATURE:
                return False
            for i in range(count):
                slot, offset = struct.unpack_from(">II", body, dataoff + 12 + 8 * i)
                if slot != CSSLOT_CODEDIRECTORY:
                    continue
                cd = dataoff + offset
                hash_offset, _, _, ncode, limit = struct.unpack_from(">IIIII", body, cd + 16)
                hash_size, hash_type, _, page_log2 = struct.unpack_from(">BBBB", body, cd + 36)
                if hash_type != CS_HASHTYPE_SHA256 or limit != dataoff:
                    return False
                page = 1 << page_log2
                for n in range(ncode):
                    expected = body[cd + hash_offset + n * hash_size : cd + hash_offset + (n + 1) * hash_size]
                    if hashlib.sha256(body[n * page : min((n + 1) * page, limit)]).digest() != expected:
                        return False
        except struct.error:
            return False
    return True


def _replace(path: Path, data: bytes) -> None:
    with replacing(path, mode=path.stat().st_mode & 0o7777) as f:
        f.write(data)