"""Mach-O test infrastructure: real macOS binaries built on Linux, and independent checks of them.

Builders (zig cc, Debian's ld64.lld-16, a universal2 writer) make real dylibs, extension modules,
MH_BUNDLEs with chained fixups and fat files; readers written with `struct` alone — deliberately not
macholib and no code from `src/` — check what sharewheel writes:

- `load_commands(path)`: install name, linked dylibs, rpaths, filetype, header padding per slice;
- `verify_code_signature(path)`: recomputes every page hash of the embedded ad-hoc signature;
- `dyld_resolves(roots, preloaded=...)`: applies dyld's search rules to an installed layout.

Fixtures (`zig`, `macos_prefixes`, both session-scoped): put `pytest_plugins = ["macho_support"]`
in each test module that uses them. That registers them once for the run; importing them by name
(`from macho_support import zig`) into several modules would also work but creates one fixture
per module, so everything would be compiled again for each module. tests/conftest.py does not
know about this module. (PYTEST_DONT_REWRITE: test modules import this module before
`pytest_plugins` registers it, and it raises its own AssertionErrors with messages.)
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import c_source_file, find_tool

__all__ = [
    "ACME_DIR",
    "DEFAULT_TARGETS",
    "LIBSYSTEM_SYMBOLS",
    "DyldLink",
    "DyldReport",
    "MacPrefix",
    "Zig",
    "build_bundle_lld",
    "build_dylib",
    "build_extension",
    "build_object",
    "code_signature_info",
    "dyld_resolves",
    "extension_source",
    "find_ld64_lld",
    "is_macho",
    "lld_arch",
    "load_commands",
    "macho_archs",
    "macos_prefix",
    "macos_prefixes",
    "make_fat",
    "verify_code_signature",
    "write_libsystem_tbd",
    "write_tbd",
    "zig",
    "zig_target",
]

ACME_DIR = Path(__file__).resolve().parents[1] / "examples" / "acme"

# zig needs a versioned macOS target (an unversioned one picks odd defaults).
DEFAULT_TARGETS = {"arm64": "aarch64-macos.11.0", "x86_64": "x86_64-macos.10.13"}

# ---------------------------------------------------------------------------------------------
# Mach-O constants (mach-o/loader.h, mach-o/fat.h, kern/cs_blobs.h)

FAT_MAGIC, FAT_MAGIC_64 = 0xCAFEBABE, 0xCAFEBABF
MH_MAGIC, MH_MAGIC_64 = 0xFEEDFACE, 0xFEEDFACF
MH_EXECUTE, MH_DYLIB, MH_BUNDLE = 2, 6, 8

LC_REQ_DYLD = 0x80000000
LC_SEGMENT, LC_SEGMENT_64 = 0x1, 0x19
LC_LOAD_DYLIB, LC_ID_DYLIB, LC_LOAD_DYLINKER = 0xC, 0xD, 0xE
LC_LOAD_WEAK_DYLIB = 0x18 | LC_REQ_DYLD
LC_RPATH = 0x1C | LC_REQ_DYLD
LC_CODE_SIGNATURE = 0x1D
LC_REEXPORT_DYLIB = 0x1F | LC_REQ_DYLD
LC_LAZY_LOAD_DYLIB = 0x20
LC_LOAD_UPWARD_DYLIB = 0x23 | LC_REQ_DYLD
LC_DYLD_CHAINED_FIXUPS = 0x34 | LC_REQ_DYLD

DYLIB_COMMANDS = {
    LC_LOAD_DYLIB: "LC_LOAD_DYLIB",
    LC_LOAD_WEAK_DYLIB: "LC_LOAD_WEAK_DYLIB",
    LC_REEXPORT_DYLIB: "LC_REEXPORT_DYLIB",
    LC_LAZY_LOAD_DYLIB: "LC_LAZY_LOAD_DYLIB",
    LC_LOAD_UPWARD_DYLIB: "LC_LOAD_UPWARD_DYLIB",
}
ZEROFILL_SECTION_TYPES = {0x1, 0xC, 0x12}  # S_ZEROFILL, S_GB_ZEROFILL, S_THREAD_LOCAL_ZEROFILL

CPU_ARCH_ABI64, CPU_ARCH_ABI64_32 = 0x01000000, 0x02000000
CPU_NAMES = {
    7: "i386", 7 | CPU_ARCH_ABI64: "x86_64", 12: "arm", 12 | CPU_ARCH_ABI64: "arm64",
    12 | CPU_ARCH_ABI64_32: "arm64_32", 18: "ppc", 18 | CPU_ARCH_ABI64: "ppc64",
}
CPU_SUBTYPE_ARM64E = 2

CSMAGIC_EMBEDDED_SIGNATURE = 0xFADE0CC0
CSMAGIC_CODEDIRECTORY = 0xFADE0C02
CSMAGIC_REQUIREMENTS = 0xFADE0C01
CSMAGIC_BLOBWRAPPER = 0xFADE0B01
CSSLOT_CODEDIRECTORY, CSSLOT_REQUIREMENTS = 0, 2
CSSLOT_ALTERNATE_CODEDIRECTORIES = range(0x1000, 0x1005)
CSSLOT_SIGNATURESLOT = 0x10000
# special slots whose data lives in the SuperBlob itself (the others hash files outside the binary)
EMBEDDED_SPECIAL_SLOTS = {2: "requirements", 5: "entitlements", 7: "DER entitlements"}
CS_HASHES = {1: ("sha1", 20), 2: ("sha256", 32), 3: ("sha256", 20), 4: ("sha384", 48)}


# ---------------------------------------------------------------------------------------------
# Independent Mach-O reader (struct only)

@dataclass(frozen=True)
class _Command:
    cmd: int
    offset: int  # of the command, relative to the slice start
    size: int


@dataclass(frozen=True)
class _Slice:
    arch: str
    cputype: int
    cpusubtype: int
    offset: int  # in the file
    size: int
    endian: str  # "<" or ">"
    is64: bool
    filetype: int
    ncmds: int
    sizeofcmds: int
    flags: int
    commands: tuple[_Command, ...]

    @property
    def header_size(self) -> int:
        return 32 if self.is64 else 28


def _arch_name(cputype: int, cpusubtype: int) -> str:
    name = CPU_NAMES.get(cputype, f"cpu{cputype:#x}")
    if name == "arm64" and (cpusubtype & 0xFF) == CPU_SUBTYPE_ARM64E:
        name = "arm64e"
    return name


def _parse_thin(data: bytes, offset: int, size: int, where: str) -> _Slice:
    if size < 28:
        raise ValueError(f"{where}: too short for a Mach-O header")
    magic_le = struct.unpack_from("<I", data, offset)[0]
    if magic_le in (MH_MAGIC, MH_MAGIC_64):
        endian = "<"
    elif struct.unpack_from(">I", data, offset)[0] in (MH_MAGIC, MH_MAGIC_64):
        endian = ">"
    else:
        raise ValueError(f"{where}: not a Mach-O file (magic {magic_le:#010x})")
    magic, cputype, cpusubtype, filetype, ncmds, sizeofcmds, flags = struct.unpack_from(
        endian + "7I", data, offset)
    is64 = magic == MH_MAGIC_64
    header = 32 if is64 else 28
    if header + sizeofcmds > size:
        raise ValueError(f"{where}: load commands ({sizeofcmds} bytes) run past the slice")
    commands = []
    pos = header
    for i in range(ncmds):
        if pos + 8 > header + sizeofcmds:
            raise ValueError(f"{where}: load command {i} starts past sizeofcmds")
        cmd, cmdsize = struct.unpack_from(endian + "2I", data, offset + pos)
        if cmdsize < 8 or pos + cmdsize > header + sizeofcmds:
            raise ValueError(f"{where}: load command {i} ({cmd:#x}) has a bad size {cmdsize}")
        commands.append(_Command(cmd, pos, cmdsize))
        pos += cmdsize
    return _Slice(_arch_name(cputype, cpusubtype), cputype, cpusubtype, offset, size, endian, is64,
                  filetype, ncmds, sizeofcmds, flags, tuple(commands))


def _parse(data: bytes, where: str = "Mach-O") -> tuple[bool, list[_Slice]]:
    """(is_fat, slices) of a thin or fat Mach-O file's bytes."""
    if len(data) < 8:
        raise ValueError(f"{where}: too short for a Mach-O file")
    magic = struct.unpack_from(">I", data, 0)[0]
    if magic in (FAT_MAGIC, FAT_MAGIC_64):
        nfat = struct.unpack_from(">I", data, 4)[0]
        if nfat == 0 or nfat > 32:  # 0xcafebabe is also a Java class file's magic
            raise ValueError(f"{where}: implausible fat header ({nfat} architectures)")
        slices = []
        for i in range(nfat):
            if magic == FAT_MAGIC:
                cputype, _cpusubtype, off, size, _align = struct.unpack_from(
                    ">5I", data, 8 + 20 * i)
            else:
                cputype, _cpusubtype, off, size, _align, _ = struct.unpack_from(
                    ">2I2Q2I", data, 8 + 32 * i)
            if off + size > len(data):
                raise ValueError(f"{where}: fat slice {i} runs past the end of the file")
            thin = _parse_thin(data, off, size, f"{where} (slice {i})")
            if thin.cputype != cputype:
                raise ValueError(f"{where}: fat entry {i} says cputype {cputype:#x}, "
                                 f"the slice says {thin.cputype:#x}")
            slices.append(thin)
        return True, slices
    return False, [_parse_thin(data, 0, len(data), where)]


def _cstr(data: bytes, start: int, end: int) -> str:
    raw = data[start:end]
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _lc_str(data: bytes, sl: _Slice, c: _Command) -> str:
    """The string a load command points to with an lc_str at offset 8 (dylib, rpath, dylinker)."""
    (str_off,) = struct.unpack_from(sl.endian + "I", data, sl.offset + c.offset + 8)
    return _cstr(data, sl.offset + c.offset + str_off, sl.offset + c.offset + c.size)


@dataclass(frozen=True)
class _Segment:
    name: str
    fileoff: int
    filesize: int
    sections: tuple[tuple[str, int, int, int], ...]  # (name, offset, size, flags)


def _segments(data: bytes, sl: _Slice) -> list[_Segment]:
    out = []
    for c in sl.commands:
        base = sl.offset + c.offset
        if c.cmd == LC_SEGMENT_64:
            segname = _cstr(data, base + 8, base + 24)
            _vmaddr, _vmsize, fileoff, filesize, _maxp, _initp, nsects, _flags = struct.unpack_from(
                sl.endian + "4Q4I", data, base + 24)
            sect_fmt, sect_size, first = sl.endian + "QQIIIIIIII", 80, base + 72
        elif c.cmd == LC_SEGMENT:
            segname = _cstr(data, base + 8, base + 24)
            _vmaddr, _vmsize, fileoff, filesize, _maxp, _initp, nsects, _flags = struct.unpack_from(
                sl.endian + "8I", data, base + 24)
            sect_fmt, sect_size, first = sl.endian + "IIIIIIIII", 68, base + 56
        else:
            continue
        sections = []
        for i in range(nsects):
            s = first + i * sect_size
            sectname = _cstr(data, s, s + 16)
            fields = struct.unpack_from(sect_fmt, data, s + 32)
            size, offset, flags = fields[1], fields[2], fields[6]
            sections.append((sectname, offset, size, flags))
        out.append(_Segment(segname, fileoff, filesize, tuple(sections)))
    return out


def _header_padding(data: bytes, sl: _Slice) -> int | None:
    """Free bytes between the end of the load commands and the first section's file data."""
    starts = [off for seg in _segments(data, sl) for (_n, off, _size, flags) in seg.sections
              if off and (flags & 0xFF) not in ZEROFILL_SECTION_TYPES]
    if not starts:
        return None
    return min(starts) - (sl.header_size + sl.sizeofcmds)


def _read(path: str | os.PathLike[str]) -> bytes:
    return Path(path).read_bytes()


def is_macho(path: str | os.PathLike[str]) -> bool:
    """Whether PATH is a thin or fat Mach-O file (by its magic; fat headers checked for sanity)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    if len(head) < 8:
        return False
    be, le = struct.unpack(">I", head[:4])[0], struct.unpack("<I", head[:4])[0]
    if be in (FAT_MAGIC, FAT_MAGIC_64):
        return 0 < struct.unpack(">I", head[4:])[0] <= 32
    return le in (MH_MAGIC, MH_MAGIC_64) or be in (MH_MAGIC, MH_MAGIC_64)


def macho_archs(path: str | os.PathLike[str]) -> list[str]:
    """The architectures of a thin or fat Mach-O file, in file order (`["x86_64", "arm64"]`)."""
    return [sl.arch for sl in _parse(_read(path), str(path))[1]]


def load_commands(path: str | os.PathLike[str]) -> dict[str, dict]:
    """Per architecture, what a dynamic loader reads from a Mach-O file, read with `struct` alone.

    `{arch: {"id": install name (LC_ID_DYLIB) or None, "dylibs": [names of LC_LOAD_DYLIB,
    LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, LC_LAZY_LOAD_DYLIB, LC_LOAD_UPWARD_DYLIB in order],
    "rpaths": [LC_RPATH], "filetype": MH_*}` plus "dylib_commands" ([(command name, name)]),
    "weak_dylibs", "reexported_dylibs", "dylinker" (LC_LOAD_DYLINKER or None), "commands"
    ([cmd numbers in order]), "signed" (has LC_CODE_SIGNATURE), "chained_fixups",
    "header_padding" (bytes free between the load commands and the first section's data: room
    for new load commands without moving anything), "ncmds", "sizeofcmds", "flags", "cputype",
    "cpusubtype", "fat" (whether the file is a fat file).
    """
    data = _read(path)
    fat, slices = _parse(data, str(path))
    result: dict[str, dict] = {}
    for sl in slices:
        info: dict = {
            "id": None, "dylibs": [], "rpaths": [], "filetype": sl.filetype,
            "dylib_commands": [], "weak_dylibs": [], "reexported_dylibs": [], "dylinker": None,
            "commands": [c.cmd for c in sl.commands],
            "signed": any(c.cmd == LC_CODE_SIGNATURE for c in sl.commands),
            "chained_fixups": any(c.cmd == LC_DYLD_CHAINED_FIXUPS for c in sl.commands),
            "header_padding": _header_padding(data, sl), "ncmds": sl.ncmds,
            "sizeofcmds": sl.sizeofcmds, "flags": sl.flags, "cputype": sl.cputype,
            "cpusubtype": sl.cpusubtype, "fat": fat,
        }
        for c in sl.commands:
            if c.cmd == LC_ID_DYLIB:
                info["id"] = _lc_str(data, sl, c)
            elif c.cmd in DYLIB_COMMANDS:
                name = _lc_str(data, sl, c)
                info["dylibs"].append(name)
                info["dylib_commands"].append((DYLIB_COMMANDS[c.cmd], name))
                if c.cmd == LC_LOAD_WEAK_DYLIB:
                    info["weak_dylibs"].append(name)
                elif c.cmd == LC_REEXPORT_DYLIB:
                    info["reexported_dylibs"].append(name)
            elif c.cmd == LC_RPATH:
                info["rpaths"].append(_lc_str(data, sl, c))
            elif c.cmd == LC_LOAD_DYLINKER:
                info["dylinker"] = _lc_str(data, sl, c)
        if sl.arch in result:
            raise ValueError(f"{path}: two slices for {sl.arch}")
        result[sl.arch] = info
    return result


# ---------------------------------------------------------------------------------------------
# Code signature: an independent verifier of embedded (ad-hoc) signatures

def _hash(hash_type: int, blob: bytes) -> bytes:
    name, size = CS_HASHES[hash_type]
    return hashlib.new(name, blob).digest()[:size]


def _code_directories(sig: bytes, problems: list[str], where: str) -> tuple[dict[int, bytes], bool]:
    """{slot type: blob bytes} of a SuperBlob, and whether it parsed."""
    if len(sig) < 12:
        problems.append(f"{where}: signature too short ({len(sig)} bytes)")
        return {}, False
    magic, length, count = struct.unpack_from(">3I", sig, 0)
    if magic != CSMAGIC_EMBEDDED_SIGNATURE:
        problems.append(f"{where}: SuperBlob magic {magic:#x}, expected "
                        f"{CSMAGIC_EMBEDDED_SIGNATURE:#x}")
        return {}, False
    if length > len(sig):
        problems.append(f"{where}: SuperBlob length {length} exceeds LC_CODE_SIGNATURE datasize "
                        f"{len(sig)}")
        return {}, False
    if 12 + 8 * count > length:
        problems.append(f"{where}: SuperBlob index ({count} entries) runs past its length")
        return {}, False
    blobs: dict[int, bytes] = {}
    for i in range(count):
        slot, off = struct.unpack_from(">2I", sig, 12 + 8 * i)
        if off + 8 > length:
            problems.append(f"{where}: blob {i} (slot {slot:#x}) at {off} is outside the SuperBlob")
            continue
        _bmagic, blen = struct.unpack_from(">2I", sig, off)
        if blen < 8 or off + blen > length:
            problems.append(f"{where}: blob {i} (slot {slot:#x}) has a bad length {blen}")
            continue
        if slot in blobs:
            problems.append(f"{where}: slot {slot:#x} appears twice in the SuperBlob")
        blobs[slot] = sig[off:off + blen]
    return blobs, True


def _parse_cd(cd: bytes) -> dict:
    (magic, length, version, flags, hash_offset, ident_offset, n_special, n_code, code_limit,
     hash_size, hash_type, platform, page_size, _spare2) = struct.unpack_from(">9I4BI", cd, 0)
    info = {
        "magic": magic, "length": length, "version": version, "flags": flags,
        "hash_offset": hash_offset, "ident_offset": ident_offset, "n_special_slots": n_special,
        "n_code_slots": n_code, "code_limit": code_limit, "hash_size": hash_size,
        "hash_type": hash_type, "platform": platform, "page_size_log2": page_size,
        "team_id": None, "exec_seg_base": None, "exec_seg_limit": None, "exec_seg_flags": None,
    }
    if version >= 0x20200 and len(cd) >= 52:
        (team_offset,) = struct.unpack_from(">I", cd, 48)
        if team_offset:
            info["team_id"] = _cstr(cd, team_offset, len(cd))
    if version >= 0x20300 and len(cd) >= 64:
        (code_limit64,) = struct.unpack_from(">Q", cd, 56)
        if code_limit64:
            info["code_limit"] = code_limit64
    if version >= 0x20400 and len(cd) >= 88:
        info["exec_seg_base"], info["exec_seg_limit"], info["exec_seg_flags"] = struct.unpack_from(
            ">3Q", cd, 64)
    info["identifier"] = _cstr(cd, ident_offset, len(cd)) if 0 < ident_offset < len(cd) else None
    return info


def _slice_signature(data: bytes, sl: _Slice, where: str) -> tuple[dict | None, list[str]]:
    """(info about the signature of one slice or None if unsigned, problems)."""
    problems: list[str] = []
    cs = [c for c in sl.commands if c.cmd == LC_CODE_SIGNATURE]
    if not cs:
        return None, [f"{where}: no LC_CODE_SIGNATURE"]
    if len(cs) > 1:
        problems.append(f"{where}: {len(cs)} LC_CODE_SIGNATURE commands")
    dataoff, datasize = struct.unpack_from(sl.endian + "2I", data, sl.offset + cs[0].offset + 8)
    if dataoff + datasize > sl.size:
        problems.append(f"{where}: signature [{dataoff}, {dataoff + datasize}) runs past the slice "
                        f"({sl.size} bytes)")
        return {"dataoff": dataoff, "datasize": datasize}, problems
    linkedit = [s for s in _segments(data, sl) if s.name == "__LINKEDIT"]
    if not linkedit:
        problems.append(f"{where}: no __LINKEDIT segment")
    else:
        le = linkedit[0]
        if not (le.fileoff <= dataoff and dataoff + datasize <= le.fileoff + le.filesize):
            problems.append(
                f"{where}: __LINKEDIT [{le.fileoff}, {le.fileoff + le.filesize}) does not cover "
                f"the signature [{dataoff}, {dataoff + datasize})")
    sig = data[sl.offset + dataoff:sl.offset + dataoff + datasize]
    blobs, ok = _code_directories(sig, problems, where)
    info: dict = {"dataoff": dataoff, "datasize": datasize, "slots": sorted(blobs),
                  "code_directories": []}
    if not ok:
        return info, problems
    cd_slots = [s for s in blobs
                if s == CSSLOT_CODEDIRECTORY or s in CSSLOT_ALTERNATE_CODEDIRECTORIES]
    if CSSLOT_CODEDIRECTORY not in blobs:
        problems.append(f"{where}: no CodeDirectory in slot 0")
    if CSSLOT_SIGNATURESLOT in blobs:
        wrapper = blobs[CSSLOT_SIGNATURESLOT]
        (wmagic,) = struct.unpack_from(">I", wrapper, 0)
        info["cms_signature_bytes"] = len(wrapper) - 8
        if wmagic != CSMAGIC_BLOBWRAPPER:
            problems.append(f"{where}: signature slot magic {wmagic:#x}, expected "
                            f"{CSMAGIC_BLOBWRAPPER:#x}")
    if CSSLOT_REQUIREMENTS in blobs:
        (rmagic,) = struct.unpack_from(">I", blobs[CSSLOT_REQUIREMENTS], 0)
        if rmagic != CSMAGIC_REQUIREMENTS:
            problems.append(f"{where}: requirements blob magic {rmagic:#x}, expected "
                            f"{CSMAGIC_REQUIREMENTS:#x}")
    for slot in sorted(cd_slots):
        cd = blobs[slot]
        cwhere = f"{where}: CodeDirectory (slot {slot:#x})"
        if len(cd) < 44:
            problems.append(f"{cwhere}: too short ({len(cd)} bytes)")
            continue
        cdi = _parse_cd(cd)
        info["code_directories"].append(cdi)
        if cdi["magic"] != CSMAGIC_CODEDIRECTORY:
            problems.append(f"{cwhere}: magic {cdi['magic']:#x}, expected "
                            f"{CSMAGIC_CODEDIRECTORY:#x}")
            continue
        if cdi["hash_type"] not in CS_HASHES:
            problems.append(f"{cwhere}: unsupported hashType {cdi['hash_type']}")
            continue
        if cdi["hash_size"] != CS_HASHES[cdi["hash_type"]][1]:
            problems.append(f"{cwhere}: hashSize {cdi['hash_size']} does not fit hashType "
                            f"{cdi['hash_type']}")
            continue
        if not cdi["identifier"]:
            problems.append(f"{cwhere}: no identifier")
        code_limit = cdi["code_limit"]
        if code_limit != dataoff:
            problems.append(f"{cwhere}: codeLimit {code_limit} != LC_CODE_SIGNATURE dataoff "
                            f"{dataoff}")
        page = 1 << cdi["page_size_log2"] if cdi["page_size_log2"] else max(code_limit, 1)
        expected_slots = -(-code_limit // page)
        if cdi["n_code_slots"] != expected_slots:
            problems.append(f"{cwhere}: nCodeSlots {cdi['n_code_slots']} != ceil(codeLimit "
                            f"{code_limit} / pageSize {page}) = {expected_slots}")
        hs, ho = cdi["hash_size"], cdi["hash_offset"]
        if ho + cdi["n_code_slots"] * hs > len(cd) or ho - cdi["n_special_slots"] * hs < 44:
            problems.append(f"{cwhere}: hash slots run outside the CodeDirectory")
            continue
        code = data[sl.offset:sl.offset + min(code_limit, sl.size)]
        bad_pages = []
        for i in range(cdi["n_code_slots"]):
            stored = cd[ho + i * hs:ho + (i + 1) * hs]
            if _hash(cdi["hash_type"], code[i * page:min((i + 1) * page, code_limit)]) != stored:
                bad_pages.append(i)
        if bad_pages:
            shown = ", ".join(map(str, bad_pages[:8])) + (" ..." if len(bad_pages) > 8 else "")
            problems.append(f"{cwhere}: {len(bad_pages)} of {cdi['n_code_slots']} page hashes "
                            f"do not match (pages {shown}; page size {page})")
        for special, what in EMBEDDED_SPECIAL_SLOTS.items():
            present = special in blobs
            if special > cdi["n_special_slots"]:
                if present:
                    problems.append(f"{cwhere}: a {what} blob is present but nSpecialSlots is "
                                    f"{cdi['n_special_slots']} (< {special})")
                continue
            stored = cd[ho - special * hs:ho - (special - 1) * hs]
            if present:
                if _hash(cdi["hash_type"], blobs[special]) != stored:
                    problems.append(f"{cwhere}: special slot {special} ({what}) hash does not "
                                    f"match the {what} blob")
            elif stored != bytes(hs):
                problems.append(f"{cwhere}: special slot {special} ({what}) is set but there is "
                                f"no {what} blob")
        info["code_directory_hashes"] = info.get("code_directory_hashes", []) + [
            _hash(cdi["hash_type"], cd).hex()]
    return info, problems


def code_signature_info(path: str | os.PathLike[str]) -> dict[str, dict | None]:
    """Per architecture, what the embedded signature says (None for an unsigned slice):
    {"dataoff", "datasize", "slots" (SuperBlob slot types), "code_directories": [{"identifier",
    "flags" (0x2 = CS_ADHOC, 0x20000 = CS_LINKER_SIGNED), "hash_type", "page_size_log2",
    "n_code_slots", "n_special_slots", "code_limit", "version", "team_id", "exec_seg_base",
    "exec_seg_limit", "exec_seg_flags", ...}], "cms_signature_bytes" (if a signature slot)}."""
    data = _read(path)
    return {sl.arch: _slice_signature(data, sl, f"{path} [{sl.arch}]")[0]
            for sl in _parse(data, str(path))[1]}


def verify_code_signature(path: str | os.PathLike[str], *,
                          unsigned_ok: Collection[str] = ()) -> list[str]:
    """Problems with the embedded code signature of every slice of a thin or fat Mach-O file;
    an empty list means every slice is validly signed.

    Written with `struct` only (independent of macholib and of sharewheel's signer). Per slice:
    LC_CODE_SIGNATURE lies inside the slice and inside __LINKEDIT; the SuperBlob (0xfade0cc0)
    and its index are well-formed; every CodeDirectory (slot 0 and alternates 0x1000+,
    0xfade0c02) has codeLimit == dataoff, nCodeSlots == ceil(codeLimit / 2**pageSize), a known
    hashType (1 SHA-1, 2 SHA-256, 3 SHA-256/20, 4 SHA-384) with its hashSize, an identifier, and
    every page hash recomputed over the slice's bytes matches; the special slots of blobs kept in
    the SuperBlob (2 requirements, 5 entitlements, 7 DER entitlements) hold their hash, or zeros
    when the blob is absent. `unsigned_ok`: architectures whose slices may be unsigned (x86_64:
    macOS does not require it, and zig/lld leave x86_64 output unsigned).
    """
    data = _read(path)
    try:
        _fat, slices = _parse(data, str(path))
    except ValueError as e:
        return [str(e)]
    problems: list[str] = []
    for sl in slices:
        info, slice_problems = _slice_signature(data, sl, f"{path} [{sl.arch}]")
        if info is None and sl.arch in unsigned_ok:
            continue
        problems.extend(slice_problems)
    return problems


# ---------------------------------------------------------------------------------------------
# Builders: zig cc, ld64.lld, fat files

def zig_target(target: str) -> str:
    """A zig target for `target`: an arch name ("arm64", "x86_64") or a full versioned target."""
    target = DEFAULT_TARGETS.get(target, target)
    os_part = target.split("-")[1] if "-" in target else ""
    if not os_part.startswith("macos."):
        raise ValueError(f"zig target {target!r}: give a versioned macOS target, e.g. "
                         f"'aarch64-macos.11.0' (an unversioned one picks odd defaults)")
    return target


def lld_arch(target: str) -> str:
    """ld64's -arch name of a zig target (`aarch64-macos.11.0` -> `arm64`)."""
    cpu = zig_target(target).split("-")[0]
    return {"aarch64": "arm64", "arm64": "arm64", "x86_64": "x86_64"}[cpu]


@dataclass(frozen=True)
class Zig:
    """`python -m ziglang cc` with a run-wide cache (ZIG_GLOBAL_CACHE_DIR)."""

    cache_dir: Path

    def cc(self, target: str, *args: str | os.PathLike[str],
           cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `zig cc -target TARGET -O2 ARGS...`; AssertionError with zig's output on failure."""
        cmd = [sys.executable, "-m", "ziglang", "cc", "-target", zig_target(target), "-O2",
               *map(str, args)]
        env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(self.cache_dir),
               "ZIG_LOCAL_CACHE_DIR": str(self.cache_dir / "local")}
        result = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True,
                                stdin=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            raise AssertionError(f"zig cc failed ({result.returncode}): {' '.join(cmd)}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result


def _require_ziglang() -> None:
    if importlib.util.find_spec("ziglang") is None:
        pytest.fail(f"the `ziglang` package is not importable from {sys.executable}: the macOS "
                    f"tests need it to build Mach-O binaries (pip install ziglang)", pytrace=False)


@pytest.fixture(scope="session")
def zig(tmp_path_factory: pytest.TempPathFactory) -> Zig:
    """zig cc (the `ziglang` wheel) with one cache for the whole run. Fails, never skips, when
    ziglang is missing."""
    from conftest import run_shared_dir

    _require_ziglang()
    return Zig(run_shared_dir(tmp_path_factory, "zig-cache"))


def find_ld64_lld() -> str:
    """The ld64 flavour of lld (Debian's lld-16 package: `ld64.lld-16`); fails if absent."""
    return find_tool("ld64.lld-16", "ld64.lld", why="the MH_BUNDLE/chained-fixups tests need Debian's lld-16 (apt-get install lld-16)")



def _link_args(links: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Paths (a .dylib or .tbd to link against) as they are; strings (-lfoo, -L/dir) verbatim."""
    return [str(x) for x in links]


def build_object(zig: Zig, target: str, out: str | os.PathLike[str], source: str | os.PathLike[str],
                 *, include_dirs: Sequence[str | os.PathLike[str]] = (),
                 defines: dict[str, str] | None = None, extra_args: Sequence[str] = ()) -> Path:
    """`zig cc -c` SOURCE (a C file Path, or C text as str) into the object file OUT."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="macho-src-") as tmp:
        src = c_source_file(source, Path(tmp), out.stem)
        zig.cc(target, "-c", "-o", out, src, *(f"-I{d}" for d in include_dirs),
               *(f"-D{k}={v}" for k, v in (defines or {}).items()), *extra_args)
    return out


def build_dylib(zig: Zig, target: str, out: str | os.PathLike[str],
                source: str | os.PathLike[str] | Sequence[os.PathLike[str]], install_name: str,
                *, links: Sequence[str | os.PathLike[str]] = (), rpaths: Sequence[str] = (),
                include_dirs: Sequence[str | os.PathLike[str]] = (),
                defines: dict[str, str] | None = None, extra_args: Sequence[str] = ()) -> Path:
    """An MH_DYLIB at OUT with LC_ID_DYLIB `install_name`, linked by zig (arm64 output is
    ad-hoc signed by zig's linker, x86_64 output is not signed).

    `source`: a C file Path, several Paths, or C text (str). `links`: dylibs/.tbd files to link
    against (Paths; the LC_LOAD_DYLIB gets their install names) or raw flags ("-lacme", "-L...").
    `defines`: {"NAME": "value"} as -DNAME=value (quote C strings yourself: '"3.1.4"').
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="macho-src-") as tmp:
        if isinstance(source, (str, os.PathLike)):
            sources = [c_source_file(source, Path(tmp), out.stem.replace(".", "_"))]
        else:
            sources = [Path(s) for s in source]
        zig.cc(target, "-shared", "-o", out, *sources, *(f"-I{d}" for d in include_dirs),
               *(f"-D{k}={v}" for k, v in (defines or {}).items()),
               f"-Wl,-install_name,{install_name}", *(f"-Wl,-rpath,{r}" for r in rpaths),
               *_link_args(links), *extra_args)
    return out


def extension_source(module: str = "_core", calls: Sequence[str] = ()) -> str:
    """C text of an extension module that exports only `PyInit_<module>` and references each C
    function in `calls` (so the linker records a dependency on the library that defines it).
    Python's C API stays undefined (linked with -undefined dynamic_lookup); nothing here is run."""
    decls = "".join(f"extern int {name}(void);\n" for name in calls)
    refs = "".join(f"    v += (long)(uintptr_t)&{name};\n" for name in calls)
    return (
        "#include <stdint.h>\n#include <stdlib.h>\n"
        "extern void *PyLong_FromLong(long);\n"
        f"{decls}"
        f"void *PyInit_{module}(void) {{\n"
        "    long v = 0;\n"
        '    if (getenv("SHAREWHEEL_TEST_FAIL")) return NULL;  /* a libc dependency */\n'
        f"{refs}"
        "    return PyLong_FromLong(v);\n"
        "}\n"
    )


def build_extension(zig: Zig, target: str, out_dir: str | os.PathLike[str], *,
                    module: str = "_core", calls: Sequence[str] = (),
                    source: str | os.PathLike[str] | None = None,
                    links: Sequence[str | os.PathLike[str]] = (), rpaths: Sequence[str] = (),
                    install_name: str | None = None, py_tag: str = "cpython-311-darwin",
                    extra_args: Sequence[str] = ()) -> Path:
    """A Python-extension-like MH_DYLIB `OUT_DIR/<module>.<py_tag>.so` exporting only
    `PyInit_<module>`, Python's C API left undefined (-undefined dynamic_lookup) as setuptools
    links extensions on macOS. zig cannot make MH_BUNDLE (what setuptools makes): see
    `build_bundle_lld`. Its install name defaults to the file name (what zig records when none
    is given: a relative name)."""
    out = Path(out_dir) / f"{module}.{py_tag}.so"
    text = source if source is not None else extension_source(module, calls)
    return build_dylib(zig, target, out, text, install_name or out.name, links=links,
                       rpaths=rpaths, extra_args=["-Wl,-undefined,dynamic_lookup", *extra_args])


LIBSYSTEM_SYMBOLS = (
    "_abort", "_atexit", "_calloc", "_exit", "_fprintf", "_free", "_getenv", "_malloc", "_memcmp",
    "_memcpy", "_memmove", "_memset", "_printf", "_puts", "_realloc", "_snprintf", "_strcmp",
    "_strcpy", "_strlen", "_strncmp", "___bzero", "___error", "___stack_chk_fail",
    "___stack_chk_guard", "___stderrp", "___stdoutp", "dyld_stub_binder",
)


def write_tbd(path: str | os.PathLike[str], install_name: str, symbols: Iterable[str], *,
              archs: Sequence[str] = ("arm64", "x86_64"), current_version: str = "1.0",
              compatibility_version: str = "1.0") -> Path:
    """A TAPI v4 text stub (.tbd) for `install_name` exporting `symbols` (Mach-O names, with the
    leading underscore of C symbols), for linking with ld64.lld without the real dylib."""
    targets = ", ".join(f"{a}-macos" for a in archs)
    syms = ", ".join(f"'{s}'" for s in symbols)
    text = (
        "--- !tapi-tbd\n"
        "tbd-version:     4\n"
        f"targets:         [ {targets} ]\n"
        f"install-name:    '{install_name}'\n"
        f"current-version: {current_version}\n"
        f"compatibility-version: {compatibility_version}\n"
        "exports:\n"
        f"  - targets:         [ {targets} ]\n"
        f"    symbols:         [ {syms} ]\n"
        "...\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_libsystem_tbd(path: str | os.PathLike[str],
                        extra_symbols: Iterable[str] = ()) -> Path:
    """A small /usr/lib/libSystem.B.dylib stub exporting common libc symbols."""
    return write_tbd(path, "/usr/lib/libSystem.B.dylib", [*LIBSYSTEM_SYMBOLS, *extra_symbols],
                     current_version="1311")


def build_bundle_lld(zig: Zig, target: str, out: str | os.PathLike[str],
                     source: str | os.PathLike[str] | None = None, *, module: str = "_core",
                     calls: Sequence[str] = (), links: Sequence[str | os.PathLike[str]] = (),
                     rpaths: Sequence[str] = (), min_os: str | None = None,
                     undefined_dynamic_lookup: bool = True, libsystem_symbols: Iterable[str] = (),
                     extra_ld_args: Sequence[str] = ()) -> Path:
    """An MH_BUNDLE with chained fixups (LC_DYLD_CHAINED_FIXUPS), as Apple's ld makes extension
    modules today: zig compiles SOURCE (default: `extension_source(module, calls)`) to an object,
    `ld64.lld-16 -bundle -fixup_chains` links it against a generated libSystem.tbd and `links`
    (.dylib or .tbd Paths passed as they are; strings verbatim). arm64 output is ad-hoc signed
    by lld; x86_64 output is not. `min_os` defaults to 13.0 (arm64) / 11.0 (x86_64: chained
    fixups need 11.0)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arch = lld_arch(target)
    min_os = min_os or ("13.0" if arch == "arm64" else "11.0")
    text = source if source is not None else extension_source(module, calls)
    with tempfile.TemporaryDirectory(prefix="macho-bundle-") as tmp:
        obj = build_object(zig, target, Path(tmp) / f"{out.stem.replace('.', '_')}.o", text)
        libsystem = write_libsystem_tbd(Path(tmp) / "libSystem.tbd", libsystem_symbols)
        cmd = [find_ld64_lld(), "-arch", arch, "-platform_version", "macos", min_os, min_os,
               "-bundle", "-fixup_chains", "-o", str(out), str(obj), str(libsystem),
               *_link_args(links), *(a for r in rpaths for a in ("-rpath", r)),
               *(["-undefined", "dynamic_lookup"] if undefined_dynamic_lookup else []),
               *extra_ld_args]
        result = subprocess.run(cmd, text=True, capture_output=True, stdin=subprocess.DEVNULL,
                                check=False)
        if result.returncode != 0:
            raise AssertionError(f"ld64.lld failed ({result.returncode}): {' '.join(cmd)}\n"
                                 f"{result.stdout}\n{result.stderr}")
    return out


def make_fat(out: str | os.PathLike[str], thin_files: Sequence[str | os.PathLike[str]], *,
             align: int = 14) -> Path:
    """A fat (universal) file of THIN_FILES, in the given order: FAT_MAGIC header, one fat_arch
    (cputype, cpusubtype, offset, size, align) per slice, each slice at a 2**align offset, as
    lipo writes universal2 files. Independent of sharewheel; refuses fat or duplicate inputs."""
    blobs = [Path(f).read_bytes() for f in thin_files]
    if not blobs:
        raise ValueError("make_fat: no input files")
    entries = []
    offset = 8 + 20 * len(blobs)
    for f, blob in zip(thin_files, blobs):
        fat, slices = _parse(blob, str(f))
        if fat:
            raise ValueError(f"make_fat: {f} is already a fat file")
        (sl,) = slices
        offset = -(-offset // (1 << align)) * (1 << align)
        entries.append((sl.cputype, sl.cpusubtype, offset, len(blob), align))
        offset += len(blob)
    archs = [(c, s & 0x00FFFFFF) for c, s, *_ in entries]
    if len(set(archs)) != len(archs):
        raise ValueError(f"make_fat: duplicate architectures in {list(map(str, thin_files))}")
    out_bytes = bytearray(struct.pack(">2I", FAT_MAGIC, len(blobs)))
    for entry in entries:
        out_bytes += struct.pack(">5I", *entry)
    for (_c, _s, off, _size, _a), blob in zip(entries, blobs):
        out_bytes += bytes(off - len(out_bytes))
        out_bytes += blob
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(out_bytes))
    out.chmod(0o755)
    return out


# ---------------------------------------------------------------------------------------------
# A macOS build prefix of libacme

@dataclass(frozen=True)
class MacPrefix:
    """libacme VERSION for macOS as `make install` leaves it: lib/libacme.MAJOR.dylib (install
    name = its absolute path), lib/libacme.dylib -> it, include/acme.h, lib/pkgconfig/acme.pc."""

    root: Path
    variant: str  # "arm64", "x86_64" or "universal2"
    version: str

    @property
    def major(self) -> str:
        return self.version.split(".")[0]

    @property
    def lib(self) -> Path:
        return self.root / "lib" / f"libacme.{self.major}.dylib"

    @property
    def link(self) -> Path:
        return self.root / "lib" / "libacme.dylib"

    @property
    def install_name(self) -> str:
        return str(self.lib)

    @property
    def include(self) -> Path:
        return self.root / "include"

    @property
    def archs(self) -> list[str]:
        return ["x86_64", "arm64"] if self.variant == "universal2" else [self.variant]


def macos_prefix(zig: Zig, prefix: str | os.PathLike[str], variant: str = "arm64",
                 version: str = "3.1.4") -> MacPrefix:
    """Build examples/acme as a macOS prefix at PREFIX: thin "arm64", thin "x86_64" or
    "universal2" (x86_64 then arm64, as lipo orders them)."""
    root = Path(prefix)
    result = MacPrefix(root, variant, version)
    (root / "lib" / "pkgconfig").mkdir(parents=True, exist_ok=True)
    (root / "include").mkdir(parents=True, exist_ok=True)
    defines = {"ACME_MAJOR": result.major, "ACME_VERSION": f'"{version}"'}
    source = ACME_DIR / "acme.c"
    if variant in DEFAULT_TARGETS:
        build_dylib(zig, variant, result.lib, source, result.install_name, include_dirs=[ACME_DIR],
                    defines=defines)
    elif variant == "universal2":
        with tempfile.TemporaryDirectory(prefix="macho-acme-") as tmp:
            thin = [build_dylib(zig, arch, Path(tmp) / arch / result.lib.name, source,
                                result.install_name, include_dirs=[ACME_DIR], defines=defines)
                    for arch in ("x86_64", "arm64")]
            make_fat(result.lib, thin)
    else:
        raise ValueError(f"macos_prefix: variant {variant!r} (arm64, x86_64 or universal2)")
    if result.link.is_symlink() or result.link.exists():
        result.link.unlink()
    result.link.symlink_to(result.lib.name)
    shutil.copy(ACME_DIR / "acme.h", root / "include" / "acme.h")
    (root / "lib" / "pkgconfig" / "acme.pc").write_text(
        f"prefix={root}\nlibdir=${{prefix}}/lib\nincludedir=${{prefix}}/include\n\n"
        f"Name: acme\nDescription: The example library of sharewheel\nVersion: {version}\n"
        f"Libs: -L${{libdir}} -lacme\nCflags: -I${{includedir}}\n")
    return result


@pytest.fixture(scope="session")
def macos_prefixes(tmp_path_factory: pytest.TempPathFactory, zig: Zig):
    """`get(variant="arm64", version="3.1.4") -> MacPrefix`, each built once per run."""
    cache: dict[tuple[str, str], MacPrefix] = {}

    def get(variant: str = "arm64", version: str = "3.1.4") -> MacPrefix:
        if (variant, version) not in cache:
            base = tmp_path_factory.mktemp(f"macos-acme-{variant}-{version}")
            cache[variant, version] = macos_prefix(zig, base / "prefix", variant, version)
        return cache[variant, version]

    return get


# ---------------------------------------------------------------------------------------------
# dyld oracle

SYSTEM_PREFIXES = ("/usr/lib/", "/System/")


@dataclass(frozen=True)
class DyldLink:
    """One dylib load command of one image, in one simulated process, and how dyld resolves it.

    how: "by-install-name" (an image already loaded has this install name or path),
    "by-rpath" (found through an LC_RPATH), "by-path" (absolute, @loader_path/ or
    @executable_path/ name that exists), "system" (/usr/lib/, /System/: assumed present), or None.
    """

    root: Path            # the image whose simulated dlopen this happened in
    image: Path           # the image holding the load command
    arch: str
    command: str          # LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB, ...
    name: str             # the install name it asks for
    how: str | None
    target: Path | None   # the image it resolved to (None for system and unresolved)
    detail: str           # what matched, e.g. the LC_RPATH used
    tried: tuple[str, ...] = ()

    @property
    def resolved(self) -> bool:
        return self.how is not None

    @property
    def weak(self) -> bool:
        return self.command == "LC_LOAD_WEAK_DYLIB"

    def __str__(self) -> str:
        where = f"{self.image} [{self.arch}] {self.command} {self.name}"
        if self.resolved:
            return f"{where}: {self.how} -> {self.target or '(system)'} ({self.detail})"
        return f"{where}: NOT FOUND (tried: {', '.join(self.tried) or 'nothing'}; {self.detail})"


@dataclass
class DyldReport:
    links: list[DyldLink] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # unreadable/incompatible images
    roots: list[Path] = field(default_factory=list)

    @property
    def resolved(self) -> list[DyldLink]:
        return [link for link in self.links if link.resolved]

    @property
    def unresolved(self) -> list[DyldLink]:
        return [link for link in self.links if not link.resolved]

    @property
    def ok(self) -> bool:
        """Every non-weak load command resolves and every image could be read."""
        return not self.errors and all(link.resolved or link.weak for link in self.links)

    def find(self, image: str | os.PathLike[str], name: str | None = None,
             arch: str | None = None) -> list[DyldLink]:
        """Links of IMAGE (a path, or a file name matched against the image's name) asking for
        NAME (exact, or the name's last component), from IMAGE's own simulated dlopen when IMAGE
        was one of the roots, else from wherever it was loaded."""
        def image_matches(link: DyldLink) -> bool:
            p = Path(image)
            if p.is_absolute() or len(p.parts) > 1:
                return Path(os.path.realpath(p)) == link.image
            return link.image.name == str(image)

        def name_matches(link: DyldLink) -> bool:
            return name is None or link.name == name or link.name.rsplit("/", 1)[-1] == name

        found = [link for link in self.links if image_matches(link) and name_matches(link)
                 and (arch is None or link.arch == arch)]
        own = [link for link in found if link.root == link.image]
        return own or found

    def link(self, image: str | os.PathLike[str], name: str, arch: str | None = None) -> DyldLink:
        """The one link of IMAGE asking for NAME (see `find`); per arch, all archs must agree
        unless `arch` is given."""
        found = self.find(image, name, arch)
        if not found:
            raise AssertionError(f"no load command {name!r} in {image} [{arch or 'any arch'}]:\n"
                                 f"{self}")
        hows = {(link.how, link.target) for link in found}
        if len(hows) > 1:
            raise AssertionError(f"{image} {name}: resolves differently per root or arch "
                                 f"(pass arch=):\n" + "\n".join(map(str, found)))
        return found[0]

    def how(self, image: str | os.PathLike[str], name: str, arch: str | None = None) -> str | None:
        return self.link(image, name, arch).how

    def __str__(self) -> str:
        lines = [*(f"error: {e}" for e in self.errors), *map(str, self.links)]
        return "\n".join(lines) or "(no load commands)"


@dataclass
class _Image:
    path: Path  # real path
    arch: str
    filetype: int
    install_name: str | None
    dylibs: list[tuple[str, str]]
    rpaths: list[str]


def _load_image(path: Path, arch: str) -> _Image | str:
    """The ARCH slice of PATH, or why it cannot be loaded."""
    try:
        info = load_commands(path)
    except (OSError, ValueError) as e:
        return f"{path}: not a loadable Mach-O ({e})"
    if arch not in info:
        return f"{path}: mach-o file, but is an incompatible architecture (have {sorted(info)}, " \
               f"need {arch})"
    i = info[arch]
    return _Image(path, arch, i["filetype"], i["id"], list(i["dylib_commands"]), list(i["rpaths"]))


def _macho_files(roots: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            if is_macho(root):
                found.append(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                if not p.is_symlink() and is_macho(p):
                    found.append(p)
    return found


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(path))


def dyld_resolves(installed_roots: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                  preloaded: Sequence[str | os.PathLike[str]] = (), *,
                  arch: str | None = None,
                  executable: str | os.PathLike[str] | None = None) -> DyldReport:
    """Apply dyld's documented search rules to an installed layout: a test oracle for macOS
    loading on a Linux machine.

    Every Mach-O file under `installed_roots` (directories or files; symlinks are skipped, they
    are the same images) is treated as `dlopen`ed by full path in a fresh process, once per
    architecture it has (or only `arch`): first the `preloaded` files are loaded, in order, with
    their dependencies (what a provider's `load()` does with ctypes before the extension is
    imported); then the image itself, then its dependencies, breadth first per image as dyld4's
    `JustInTimeLoader::loadDependents` does. Each LC_LOAD_DYLIB / LC_LOAD_WEAK_DYLIB /
    LC_REEXPORT_DYLIB / LC_LAZY_LOAD_DYLIB / LC_LOAD_UPWARD_DYLIB is resolved so:

    1. `@rpath/NAME`: first an image already loaded whose install name (LC_ID_DYLIB) — or path —
       is exactly that string ("by-install-name"). dyld4 `Loader::getLoader` (dyld-940 …
       dyld-1378): "for @rpath paths, first check if already loaded as rpath", comparing with
       `JustInTimeLoader::matchesPath` (path, or install name of a dylib); dyld2/3
       `loadPhase5check` (dyld-239 … dyld-852): "an install name starting with @rpath should
       match by install name, not just real path".
       Then each LC_RPATH of the loading image, then of the image that loaded it, and so on up
       the load chain (`Loader::forEachResolvedAtPathVar` walks `options.rpathStack`, pushed in
       `loadDependents` as `LoadChain nextChain { options.rpathStack, this }`); `@loader_path`
       in an LC_RPATH is the directory of the image *holding that LC_RPATH*, `@executable_path`
       the executable's; relative LC_RPATHs are ignored, as dyld ignores them ("by-rpath").
       The preloaded images and the root were `dlopen`ed by full path: their chains start at
       themselves (the Python executable's own LC_RPATHs are not modelled).
    2. An absolute path: an already-loaded image with that path or install name (dyld4's quick
       check for absolute paths in `loadDependents`) → "by-install-name"; under /usr/lib/ or
       /System/ → "system" (the dyld shared cache; assumed present); else the file must exist
       ("by-path").
    3. `@loader_path/X`: relative to the directory of the loading image; `@executable_path/X`:
       relative to `executable`'s directory (unresolvable without one) → "by-path".
    4. Anything else (a relative name) is unresolved: dyld would look in the process's cwd.

    A candidate file counts only if it is a Mach-O with the needed architecture and an MH_DYLIB
    (otherwise dyld goes on to the next candidate and reports it in "tried"). A file reached by
    two paths is one image (dyld compares inodes; here: real paths; @loader_path is expanded
    from an image's real path). DYLD_* environment variables and fallback paths are not
    modelled. Unresolved weak links do not make the report fail (`DyldReport.ok`), as dyld lets
    them be missing.
    """
    if isinstance(installed_roots, (str, os.PathLike)):
        installed_roots = [installed_roots]
    roots = [Path(r) for r in installed_roots]
    report = DyldReport(roots=_macho_files(roots))
    exe_dir = _real(executable).parent if executable is not None else None

    for root in report.roots:
        try:
            root_archs = macho_archs(root)
        except (OSError, ValueError) as e:
            report.errors.append(f"{root}: {e}")
            continue
        for a in root_archs if arch is None else [arch]:
            _simulate(report, _real(root), [_real(p) for p in preloaded], a, exe_dir)
    return report


def _simulate(report: DyldReport, root: Path, preloaded: list[Path], arch: str,
              exe_dir: Path | None) -> None:
    loaded: list[_Image] = []
    by_real: dict[Path, _Image] = {}
    done: set[Path] = set()

    def find_loaded(name: str) -> _Image | None:
        for img in loaded:
            if str(img.path) == name or (img.filetype == MH_DYLIB and img.install_name == name):
                return img
        return None

    def expand(path_with_var: str, holder: _Image) -> str | None:
        if path_with_var == "@loader_path" or path_with_var.startswith("@loader_path/"):
            return str(holder.path.parent) + path_with_var[len("@loader_path"):]
        if path_with_var == "@executable_path" or path_with_var.startswith("@executable_path/"):
            if exe_dir is None:
                return None
            return str(exe_dir) + path_with_var[len("@executable_path"):]
        return path_with_var

    def accept(candidate: str, tried: list[str]) -> _Image | None:
        real = _real(candidate)
        if real in by_real:
            return by_real[real]
        if not real.is_file():
            tried.append(f"'{candidate}' (no such file)")
            return None
        img = _load_image(real, arch)
        if isinstance(img, str):
            tried.append(f"'{candidate}' ({img.split(': ', 1)[-1]})")
            return None
        if img.filetype != MH_DYLIB:
            tried.append(f"'{candidate}' (not a dylib: filetype {img.filetype})")
            return None
        return img

    def register(img: _Image) -> _Image:
        if img.path not in by_real:
            by_real[img.path] = img
            loaded.append(img)
        return by_real[img.path]

    def resolve(name: str, chain: list[_Image]) -> tuple[str | None, _Image | None, str, list[str]]:
        holder = chain[-1]
        tried: list[str] = []
        if name.startswith("@rpath/"):
            if (img := find_loaded(name)) is not None:
                return "by-install-name", img, f"already loaded: {img.path}", tried
            tail = name[len("@rpath"):]
            for link in reversed(chain):
                for rpath in link.rpaths:
                    base = expand(rpath, link)
                    if base is None:
                        tried.append(f"LC_RPATH '{rpath}' of {link.path.name} "
                                     f"(@executable_path: no executable)")
                        continue
                    if not base.startswith("/"):
                        tried.append(f"LC_RPATH '{rpath}' of {link.path.name} (relative: ignored)")
                        continue
                    candidate = base.rstrip("/") + tail
                    if (img := accept(candidate, tried)) is not None:
                        return "by-rpath", img, f"LC_RPATH '{rpath}' of {link.path}", tried
            if not any(link.rpaths for link in chain):
                return None, None, "no LC_RPATH in the load chain", tried
            return None, None, "no LC_RPATH led to it", tried
        if name.startswith("/"):
            if (img := find_loaded(name)) is not None:
                return "by-install-name", img, f"already loaded: {img.path}", tried
            if name.startswith(SYSTEM_PREFIXES):
                return "system", None, "system library", tried
            if (img := accept(name, tried)) is not None:
                return "by-path", img, "absolute path", tried
            return None, None, "absolute path not found", tried
        if name.startswith(("@loader_path", "@executable_path")):
            candidate = expand(name, holder)
            if candidate is None:
                return None, None, "@executable_path without an executable", tried
            if (img := accept(candidate, tried)) is not None:
                return "by-path", img, f"expanded to {candidate}", tried
            return None, None, f"expanded to {candidate}", tried
        return None, None, "relative install name (dyld would search the current directory)", tried

    def load_dependents(img: _Image, chain: list[_Image]) -> None:
        if img.path in done:
            return
        done.add(img.path)
        chain = [*chain, img]
        deps: list[_Image] = []
        for command, name in img.dylibs:
            how, target, detail, tried = resolve(name, chain)
            if target is not None:
                target = register(target)
                deps.append(target)
            report.links.append(DyldLink(root, img.path, arch, command, name, how,
                                         target.path if target is not None else None, detail,
                                         tuple(tried)))
        for dep in deps:
            load_dependents(dep, chain)

    for path in [*preloaded, root]:
        img = _load_image(path, arch)
        if isinstance(img, str):
            error = img if path != root else f"{img} (root)"
            if error not in report.errors:
                report.errors.append(error)
            continue
        load_dependents(register(img), [])
