"""ELF: the dynamic section, version needs and the x86-64 ISA note, and symbols only on demand.

What repair, show, check and the stand-in proof ask of an ELF file, read with ``mmap`` and
``struct`` from the places the loader reads: the program headers, ``PT_INTERP``, ``PT_DYNAMIC``
(``DT_NEEDED``, ``DT_SONAME``, ``DT_RPATH``, ``DT_RUNPATH``, strings through ``DT_STRTAB`` mapped by
the ``PT_LOAD`` segments), and the sections auditwheel reads (``.gnu.version_r``, ``.dynsym``, the
``SHT_NOTE`` sections) so that every answer equals what auditwheel computes with pyelftools.

Measured with benchmarks/elf_reader.py (2-core AMD EPYC VM, CPython 3.11, medians of 3,
2026-11-30) on torch 2.13's ``libtorch_cpu.so`` (434 MB, 75,406 dynamic symbols): what auditwheel
asks of one file (``elf_is_python_extension``, ``elf_find_versioned_symbols``, the dynamic segment,
the platform, ``get_undefined_symbols`` for the blacklist) takes pyelftools 6.7 s — a Python
object per symbol, the table walked twice — and this reader 8.9 ms: a question about named
symbols (is ``PyInit_x`` defined? is a blacklisted symbol imported?) first looks for the names
in the string table (one ``bytes.find``) and reads symbol entries only where a name occurs.
The whole symbol table with versions, which only the stand-in proof reads, takes 0.17 s here,
3.5 s with pyelftools and 3.2 s with lief 1.0 (parse and one pass over ``dynamic_symbols``; lief
also parses everything else, and is a 12 MB compiled dependency). On torch's ``libc10.so``
(1.5 MB): 0.96 ms against 259 ms.

Damaged input raises one ``SharewheelError`` naming the file ("malformed ELF file (...)"); every
offset and count is checked against the file's size before it is used, so a hostile count is an
error, never a long loop or a short answer.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sharewheel.errors import BinaryError
from sharewheel.readers import FileCache
from sharewheel.symbols import SymbolTable

MAGIC = b"\x7fELF"

PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
SHT_NOTE, SHT_DYNSYM = 7, 11
SHT_GNU_VERDEF, SHT_GNU_VERNEED, SHT_GNU_VERSYM = 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29
SHN_UNDEF, SHN_XINDEX = 0, 0xFFFF
STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 1, 2, 10
STT_NOTYPE, STT_FUNC = 0, 2
STV_DEFAULT, STV_PROTECTED = 0, 3
NT_GNU_PROPERTY_TYPE_0 = 5
GNU_PROPERTY_X86_ISA_1_NEEDED = 0xC0008002
VER_FLG_BASE = 1

#: the kinds of section whose names are read (.dynsym, .gnu.version_r, ...): no other is looked up by name
_NAMED_TYPES = frozenset({SHT_NOTE, SHT_DYNSYM, SHT_GNU_VERDEF, SHT_GNU_VERNEED, SHT_GNU_VERSYM})
#: pyelftools' names for the OS ABIs auditwheel compares (its Platform holds these strings)
_OSABI_NAMES = {0: "ELFOSABI_SYSV", 3: "ELFOSABI_LINUX"}
#: pyelftools' names for the machines auditwheel's policies know
MACHINE_NAMES = {3: "EM_386", 62: "EM_X86_64", 21: "EM_PPC64", 243: "EM_RISCV", 183: "EM_AARCH64",
                 22: "EM_S390", 40: "EM_ARM", 258: "EM_LOONGARCH"}


class MalformedElf(BinaryError):
    """An ELF file whose structures point outside it or contradict each other."""


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    offset: int
    size: int
    link: int
    entsize: int
    addralign: int


@dataclass(frozen=True)
class ElfFile:
    """The parts of an ELF file the loader and auditwheel look at; symbols via :func:`symbols`."""

    path: str
    elf_class: int  # 32 or 64
    little_endian: bool
    osabi: int
    machine: int
    flags: int
    interpreter: str | None
    needed: tuple[str, ...]
    soname: str | None
    rpath: str | None  # DT_RPATH as written ($ORIGIN unexpanded)
    runpath: str | None
    version_needs: tuple[tuple[str, tuple[str, ...]], ...]  # (file, its versions) from .gnu.version_r
    x86_isa_needed: tuple[int, ...]  # GNU_PROPERTY_X86_ISA_1_NEEDED of each note section that has one
    sections: tuple[Section, ...] = field(repr=False, default=())  # names only of the kinds read by name

    @property
    def osabi_name(self) -> str:
        return _OSABI_NAMES.get(self.osabi, f"ELFOSABI_{self.osabi}")

    @property
    def machine_name(self) -> str:
        return MACHINE_NAMES.get(self.machine, f"EM_{self.machine}")

    def section(self, name: str) -> Section | None:
        """The first section of that name, as pyelftools' get_section_by_name finds it."""
        return next((s for s in self.sections if s.name == name), None)


def is_elf(path: str | os.PathLike[str]) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


class _Image:
    """An open ELF file's bytes with bounds-checked reads; every failure names the file."""

    def __init__(self, path: str, data: bytes | mmap.mmap) -> None:
        self.path = path
        self.data = data
        self.size = len(data)
        if data[:4] != MAGIC:
            self.fail("no ELF magic")
        if self.size < 16 or data[4] not in (1, 2) or data[5] not in (1, 2):
            self.fail(f"unknown ELF class or data encoding {bytes(data[4:6])!r}")
        self.is64 = data[4] == 2
        self.endian = "<" if data[5] == 1 else ">"
        if self.size < (64 if self.is64 else 52):
            self.fail("shorter than an ELF header")
        (_, self.machine, _, _, self.phoff, self.shoff, self.flags, _, self.phentsize, self.phnum,
         self.shentsize, self.shnum, self.shstrndx) = self.unpack("HHIQQQIHHHHHH" if self.is64 else "HHIIIIIHHHHHH", 16)
        self.phdr = struct.Struct(self.endian + ("IIQQQQQQ" if self.is64 else "IIIIIIII"))
        self.shdr = struct.Struct(self.endian + ("IIQQQQIIQQ" if self.is64 else "IIIIIIIIII"))
        self.dyn = struct.Struct(self.endian + ("qQ" if self.is64 else "iI"))
        self.sym_size = 24 if self.is64 else 16

    def fail(self, why: str) -> None:
        raise MalformedElf(f"{os.path.basename(self.path)}: malformed ELF file ({why})")

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        size = struct.calcsize(self.endian + fmt)
        if offset < 0 or offset + size > self.size:
            self.fail(f"a structure at offset {offset:#x} lies past the end of the file")
        return struct.unpack_from(self.endian + fmt, self.data, offset)

    def check_range(self, offset: int, size: int, what: str) -> None:
        if offset < 0 or size < 0 or offset + size > self.size:
            self.fail(f"{what} ({size} bytes at {offset:#x}) lies past the end of the file")

    def string(self, offset: int, limit: int | None = None) -> str:
        """A NUL-terminated string (latin-1, as pyelftools decodes it)."""
        end = self.data.find(b"\0", offset, self.size if limit is None else limit)
        if offset < 0 or offset >= self.size or end < 0:
            self.fail(f"a string at {offset:#x} is not terminated inside the file")
        return bytes(self.data[offset:end]).decode("latin-1")

    def segments(self) -> list[tuple[int, int, int, int]]:
        """(p_type, p_offset, p_vaddr, p_filesz) of each program header."""
        if self.phnum and self.phentsize < self.phdr.size:
            self.fail(f"program header entries of {self.phentsize} bytes")
        self.check_range(self.phoff, self.phnum * self.phentsize, "the program header table")
        found = []
        for i in range(self.phnum):
            fields = self.phdr.unpack_from(self.data, self.phoff + i * self.phentsize)
            if self.is64:
                p_type, _, offset, vaddr, _, filesz, _, _ = fields
            else:
                p_type, offset, vaddr, _, filesz, _, _, _ = fields
            found.append((p_type, offset, vaddr, filesz))
        return found

    def sections(self) -> list[Section]:
        if not self.shoff:
            return []
        if self.shentsize < self.shdr.size:
            self.fail(f"section header entries of {self.shentsize} bytes")
        self.check_range(self.shoff, self.shdr.size, "the section header table")
        count, names_index = self.shnum, self.shstrndx
        if count == 0 or names_index == SHN_XINDEX:  # the real values live in section 0
            zeroth = self.shdr.unpack_from(self.data, self.shoff)
            count = count or zeroth[5]
            names_index = zeroth[6] if names_index == SHN_XINDEX else names_index
        self.check_range(self.shoff, count * self.shentsize, "the section header table")
        raw = []
        for i in range(count):
            f = self.shdr.unpack_from(self.data, self.shoff + i * self.shentsize)
            raw.append((f[0], f[1], f[4], f[5], f[6], f[9], f[8]))  # name type offset size link entsize align
        names_offset = names_size = 0
        if 0 < names_index < count:
            _, _, names_offset, names_size, _, _, _ = raw[names_index]
            self.check_range(names_offset, names_size, "the section name table")
        result = []
        for name, kind, offset, size, link, entsize, align in raw:
            named = kind in _NAMED_TYPES and names_size and name < names_size  # the others' names are never asked
            label = self.string(names_offset + name, names_offset + names_size) if named else ""
            result.append(Section(label, kind, offset, size, link, entsize, align))
        return result


def _open(path: str) -> _Image:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size >= 1 << 16:
                data: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            else:
                data = f.read()
    except OSError as e:
        raise BinaryError(f"{os.path.basename(path)}: cannot read it ({e.strerror or e})") from None
    return _Image(path, data)


def _close(image: _Image) -> None:
    if isinstance(image.data, mmap.mmap):
        image.data.close()


def read(path: str | os.PathLike[str]) -> ElfFile | None:
    """The ELF file at `path`, None if it is not one (no ELF magic); read once per file version."""
    try:
        return _read_cached(path)
    except FileNotFoundError as e:
        raise BinaryError(f"{os.path.basename(os.fspath(path))}: cannot read it ({e.strerror or e})") from None


def _read_file(name: str) -> ElfFile | None:
    if not is_elf(name):
        return None
    image = _open(name)
    try:
        return _parse(image)
    finally:
        _close(image)


def _parse(image: _Image) -> ElfFile:
    segments = image.segments()
    interpreter = None
    for p_type, offset, _, filesz in segments:
        if p_type == PT_INTERP:
            image.check_range(offset, filesz, "PT_INTERP")
            interpreter = image.string(offset, offset + filesz)
            break
    needed: list[str] = []
    soname = rpath = runpath = None
    dynamic = next(((offset, filesz) for p_type, offset, _, filesz in segments if p_type == PT_DYNAMIC), None)
    if dynamic is not None:  # the first PT_DYNAMIC, as the loader (and lddtree) use it
        offset, filesz = dynamic
        image.check_range(offset, filesz, "the dynamic segment")
        tags: list[tuple[int, int]] = []
        for i in range(filesz // image.dyn.size):
            tag, value = image.dyn.unpack_from(image.data, offset + i * image.dyn.size)
            if tag == DT_NULL:
                break
            tags.append((tag, value))
        strtab = [v for t, v in tags if t == DT_STRTAB]
        strings = _map_address(image, segments, strtab[0], "DT_STRTAB") if strtab else None
        strsz = next((v for t, v in tags if t == DT_STRSZ), None)
        limit = None if strings is None or strsz is None else min(strings + strsz, image.size)

        def text(value: int) -> str:
            if strings is None:
                image.fail("the dynamic segment names strings but has no DT_STRTAB")
            return image.string(strings + value, limit)

        for tag, value in tags:
            if tag == DT_NEEDED:
                needed.append(text(value))
            elif tag == DT_SONAME:
                soname = text(value)
            elif tag == DT_RPATH:
                rpath = text(value)
            elif tag == DT_RUNPATH:
                runpath = text(value)
    sections = tuple(image.sections())
    return ElfFile(
        image.path, 64 if image.is64 else 32, image.endian == "<", image.data[7], image.machine, image.flags,
        interpreter, tuple(needed), soname, rpath, runpath, _version_needs(image, sections),
        _x86_isa_needed(image, sections) if image.machine == 62 else (), sections,
    )


def _map_address(image: _Image, segments: list[tuple[int, int, int, int]], address: int, what: str) -> int:
    """The file offset of a virtual address, through the PT_LOAD segment that maps it."""
    for p_type, offset, vaddr, filesz in segments:
        if p_type == PT_LOAD and vaddr <= address < vaddr + filesz:
            return address - vaddr + offset
    image.fail(f"{what} {address:#x} lies in no loaded segment")
    raise AssertionError  # unreachable: fail raises


def _version_needs(image: _Image, sections: tuple[Section, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(file, versions) of .gnu.version_r, the section auditwheel reads its symbol versions from."""
    section = next((s for s in sections if s.name == ".gnu.version_r"), None)
    if section is None or section.type != SHT_GNU_VERNEED:
        return ()
    return tuple((file, tuple(name for _, name in versions)) for file, versions in _needs(image, sections, section))


def _chain(image: _Image, section: Section, fmt: str) -> Iterator[tuple[int, tuple[int, ...]]]:
    """The entries of a GNU version section (Elf_Verneed, Elf_Verdef), each `fmt`-shaped with the
    offset to the next entry last (0 ends the chain): each entry's offset and fields, bounds and
    cycles checked."""
    image.check_range(section.offset, section.size, section.name)
    offset, end = section.offset, section.offset + section.size
    for _ in range(section.size // struct.calcsize(fmt) + 1):
        fields = image.unpack(fmt, offset)
        yield offset, fields
        if not fields[-1]:
            return
        offset += fields[-1]
        if not section.offset <= offset < end:
            image.fail(f"{section.name} has an entry outside it")
    image.fail(f"{section.name}'s entries form a cycle")


def _needs(image: _Image, sections: tuple[Section, ...], section: Section) -> list[tuple[str, list[tuple[int, str]]]]:
    """Each library of a version-needs section with its (version index, version name) pairs."""
    strings = _linked_strings(image, sections, section)
    end = section.offset + section.size
    found = []
    for offset, (_, count, file, aux, _) in _chain(image, section, "HHIII"):
        versions = []
        entry = offset + aux
        for _ in range(count):
            if not section.offset <= entry < end:
                image.fail(f"{section.name} has an entry outside it")
            _, _, other, name, step = image.unpack("IHHII", entry)
            versions.append((other & 0x7FFF, strings(name)))
            entry += step
        found.append((strings(file), versions))
    return found


def _linked_strings(image: _Image, sections: tuple[Section, ...], section: Section) -> Callable[[int], str]:
    """Names in the string table a section links to (sh_link), bounds-checked."""
    if not 0 <= section.link < len(sections):
        image.fail(f"section {section.name} links to section {section.link}, which does not exist")
    table = sections[section.link]
    image.check_range(table.offset, table.size, f"the string table of {section.name}")
    end = table.offset + table.size

    def string(offset: int) -> str:
        if offset >= table.size:
            image.fail(f"a name of {section.name} lies outside its string table")
        return image.string(table.offset + offset, end)

    return string


def _x86_isa_needed(image: _Image, sections: tuple[Section, ...]) -> tuple[int, ...]:
    """GNU_PROPERTY_X86_ISA_1_NEEDED of the first GNU property note of each note section, read
    as auditwheel reads it (pyelftools' section-by-section note walk)."""
    found = []
    for section in sections:
        if section.type != SHT_NOTE or not section.size:
            continue
        image.check_range(section.offset, section.size, f"the note section {section.name}")
        align = 8 if section.addralign == 8 else 4
        offset, end = section.offset, section.offset + section.size
        while offset + 12 <= end:
            namesz, descsz, kind = image.unpack("III", offset)
            name_at = offset + 12
            desc_at = name_at + ((namesz + 3) & ~3)
            if desc_at + descsz > end:
                image.fail(f"a note of {section.name} lies past its end")
            name = bytes(image.data[name_at:name_at + namesz]).rstrip(b"\0")
            if kind == NT_GNU_PROPERTY_TYPE_0 and name == b"GNU":
                prop, prop_end = desc_at, desc_at + descsz
                step = 8 if image.is64 else 4
                while prop + 8 <= prop_end:
                    pr_type, pr_datasz = image.unpack("II", prop)
                    if pr_type == GNU_PROPERTY_X86_ISA_1_NEEDED and pr_datasz == 4:
                        found.append(image.unpack("I", prop + 8)[0])
                        break
                    prop += 8 + ((pr_datasz + step - 1) & ~(step - 1))
                break  # auditwheel reads the first GNU property note of a section only
            offset = desc_at + ((descsz + align - 1) & ~(align - 1))
    return tuple(found)


# --- symbols ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Symbol:
    name: str
    bind: int
    type: int
    visibility: int
    defined: bool  # st_shndx != SHN_UNDEF
    version: str | None  # the version it needs (undefined) or has (defined); None: unversioned
    version_file: str | None  # the library a needed version is bound to (vna_file's vn_file)


def find_symbols(path: str | os.PathLike[str], names: Iterable[str]) -> list[Symbol]:
    """The .dynsym entries named `names`, in table order (as auditwheel's scans meet them).

    Only entries whose name offset points at one of the names are decoded: the names are first
    looked for in the string table, which for most files answers the question at once."""
    elf = read(path)
    if elf is None:
        return []
    dynsym = elf.section(".dynsym")
    if dynsym is None or dynsym.type != SHT_DYNSYM:
        return []
    image = _open(elf.path)
    try:
        if not 0 <= dynsym.link < len(elf.sections):
            image.fail("the dynamic symbol table links to no string table")
        strings = elf.sections[dynsym.link]
        image.check_range(strings.offset, strings.size, "the dynamic string table")
        wanted = [n for n in set(names)
                  if image.data.find(n.encode("latin-1") + b"\0", strings.offset, strings.offset + strings.size) >= 0]
        return _SymbolReader(image, elf, dynsym).named(set(wanted)) if wanted else []  # most files: no such name
    finally:
        _close(image)


def iter_symbols(path: str | os.PathLike[str]) -> list[Symbol]:
    """Every .dynsym entry but the null one, decoded (slow on large files: for rare questions)."""
    elf = read(path)
    dynsym = None if elf is None else elf.section(".dynsym")
    if elf is None or dynsym is None or dynsym.type != SHT_DYNSYM:
        return []
    image = _open(elf.path)
    try:
        return list(_SymbolReader(image, elf, dynsym).all())
    finally:
        _close(image)


def symbols(path: str | os.PathLike[str]) -> SymbolTable:
    """Imports (by version file, or unbound) and exports of the dynamic symbol table, for the
    stand-in proof; read once per file version."""
    return _symbols_cached(path)


def _symbols_file(name: str) -> SymbolTable:
    elf = read(name)
    if elf is None:
        return SymbolTable()
    dynsym = next((s for s in elf.sections if s.type == SHT_DYNSYM), None)
    if dynsym is None:
        return SymbolTable()
    image = _open(elf.path)
    try:
        return _SymbolReader(image, elf, dynsym).table()
    finally:
        _close(image)


_read_cached = FileCache(_read_file, 8192)
_symbols_cached = FileCache(_symbols_file, 64)


class _SymbolReader:
    """A .dynsym with its string table and GNU version sections."""

    def __init__(self, image: _Image, elf: ElfFile, dynsym: Section) -> None:
        self.image = image
        image.check_range(dynsym.offset, dynsym.size, "the dynamic symbol table")
        if dynsym.entsize not in (0, image.sym_size):
            image.fail(f"dynamic symbol entries of {dynsym.entsize} bytes")
        self.offset = dynsym.offset
        self.count = dynsym.size // image.sym_size
        sections = elf.sections
        if not 0 <= dynsym.link < len(sections):
            image.fail("the dynamic symbol table links to no string table")
        strtab = sections[dynsym.link]
        image.check_range(strtab.offset, strtab.size, "the dynamic string table")
        self.strings, self.strings_end = strtab.offset, strtab.offset + strtab.size
        self.versym: int | None = None
        self.needed: dict[int, tuple[str, str]] = {}  # version index → (version, file)
        self.defined: dict[int, str] = {}  # version index → version
        for section in sections:
            if section.type == SHT_GNU_VERSYM:
                image.check_range(section.offset, min(section.size, 2 * self.count), "the symbol version table")
                if section.size >= 2 * self.count:
                    self.versym = section.offset
            elif section.type == SHT_GNU_VERNEED:
                self._read_verneed(elf, section)
            elif section.type == SHT_GNU_VERDEF:
                self._read_verdef(elf, section)

    def _read_verneed(self, elf: ElfFile, section: Section) -> None:
        for file, versions in _needs(self.image, elf.sections, section):
            for index, name in versions:
                self.needed[index] = (name, file)

    def _read_verdef(self, elf: ElfFile, section: Section) -> None:
        image, strings = self.image, _linked_strings(self.image, elf.sections, section)
        end = section.offset + section.size
        for offset, (_, flags, index, count, _, aux, _) in _chain(image, section, "HHHHIII"):
            if count and not flags & VER_FLG_BASE:  # the base entry names the file, not a version
                if not section.offset <= offset + aux < end:
                    image.fail(f"{section.name} has an entry outside it")
                self.defined[index & 0x7FFF] = strings(image.unpack("I", offset + aux)[0])

    def _columns(self) -> tuple[list[int], bytes, bytes, list[int], list[int] | None]:
        """st_name, st_info, st_other, st_shndx of every entry and the version indices, each
        read in one pass (strided slices of the table, no object per entry)."""
        import array

        image, size = self.image, self.image.sym_size
        raw = bytes(image.data[self.offset:self.offset + self.count * size])
        swap = (image.endian == "<") != (struct.pack("=I", 1) == struct.pack("<I", 1))
        words, halves = array.array("I"), array.array("H")
        words.frombytes(raw)
        halves.frombytes(raw)
        if swap:
            words.byteswap()
            halves.byteswap()
        # 64-bit: st_name@0 st_info@4 st_other@5 st_shndx@6; 32-bit: st_name@0 st_info@12 st_other@13 st_shndx@14
        info_at = 4 if image.is64 else 12
        names = words[0::size // 4].tolist()
        shndx = halves[(info_at + 2) // 2::size // 2].tolist()
        versions = None
        if self.versym is not None:
            table = array.array("H")
            table.frombytes(bytes(image.data[self.versym:self.versym + 2 * self.count]))
            if swap:
                table.byteswap()
            versions = [v & 0x7FFF for v in table]
        return names, raw[info_at::size], raw[info_at + 1::size], shndx, versions

    def _name_at(self, offset: int) -> str:
        if offset >= self.strings_end - self.strings:
            self.image.fail("a symbol's name lies outside the dynamic string table")
        return self.image.string(self.strings + offset, self.strings_end)

    def _symbol(self, columns: tuple[list[int], bytes, bytes, list[int], list[int] | None], index: int,
                name: str) -> Symbol:
        _, info, other, shndx, versions = columns
        ndx = versions[index] if versions is not None else 0
        defined = shndx[index] != SHN_UNDEF
        version, file = (self.defined.get(ndx), None) if defined else self.needed.get(ndx, (None, None))
        return Symbol(name, info[index] >> 4, info[index] & 0xF, other[index] & 0x3, defined, version, file)

    def all(self) -> Iterator[Symbol]:
        columns = self._columns()
        for index, offset in enumerate(columns[0]):
            if index:  # entry 0 is the reserved null symbol
                yield self._symbol(columns, index, self._name_at(offset))

    def table(self) -> SymbolTable:
        """Imports (by version file, or unbound) and exports, skipping what the proof ignores
        before any name is decoded (local symbols, weak imports, hidden definitions)."""
        names, info, other, shndx, versions = self._columns()
        strings = bytes(self.image.data[self.strings:self.strings_end])
        imports: dict[str | None, set[tuple[str, str | None]]] = {}
        exports: dict[str, frozenset[str | None]] = {}
        needed, defined = self.needed, self.defined
        singletons: dict[str | None, frozenset[str | None]] = {}  # one frozenset per version, shared
        try:
            for index in range(1, self.count):
                bind = info[index] >> 4
                if bind != STB_GLOBAL and bind != STB_WEAK and bind != STB_GNU_UNIQUE:
                    continue
                undefined = shndx[index] == SHN_UNDEF
                if (bind == STB_WEAK) if undefined else (other[index] & 0x3 not in (STV_DEFAULT, STV_PROTECTED)):
                    continue  # a weak import may stay unresolved; a hidden definition is no export
                start = names[index]
                name = strings[start:strings.index(b"\0", start)].decode("latin-1")
                if not name:
                    continue
                ndx = versions[index] if versions is not None else 0
                if undefined:
                    version, file = needed.get(ndx, (None, None))
                    imports.setdefault(file, set()).add((name, version))
                else:
                    version = defined.get(ndx)
                    versions_of = singletons.get(version) or singletons.setdefault(version, frozenset({version}))
                    earlier = exports.get(name)
                    exports[name] = versions_of if earlier is None else earlier | versions_of
        except ValueError:
            self.image.fail("a symbol's name lies outside the dynamic string table")
        return SymbolTable({k: frozenset(v) for k, v in imports.items()}, exports)

    def named(self, names: set[str]) -> list[Symbol]:
        data = self.image.data
        wanted: dict[int, str] = {}  # string table offset → name
        for name in names:
            needle = name.encode("latin-1") + b"\0"
            at = data.find(needle, self.strings, self.strings_end)
            while at >= 0:
                wanted[at - self.strings] = name
                at = data.find(needle, at + 1, self.strings_end)
        if not wanted:
            return []
        columns = self._columns()
        return [self._symbol(columns, index, wanted[offset]) for index, offset in enumerate(columns[0])
                if index and offset in wanted]
