"""Tests of the Mach-O test infrastructure (tests/macho_support.py) on real zig and lld outputs:
the signature verifier, the load-command reader, the fat writer and the dyld oracle must be right
before they judge sharewheel's macOS adapter."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

import macho_support as ms
import pytest
from macho_support import (
    LC_DYLD_CHAINED_FIXUPS,
    MH_BUNDLE,
    MH_DYLIB,
    Zig,
    build_bundle_lld,
    build_dylib,
    build_extension,
    code_signature_info,
    dyld_resolves,
    load_commands,
    macho_archs,
    make_fat,
    verify_code_signature,
)
from macholib import mach_o
from macholib.MachO import MachO
from macholib.SymbolTable import SymbolTable

# the fixtures `zig` and `macos_prefixes`: registered once for the whole run (importing them by
# name into several modules would build everything once per module)
pytest_plugins = ["macho_support"]

FOO_C = "int foo(void) { return 42; }\n"
BAR_C = "extern int foo(void);\nint bar(void) { return foo() + 1; }\n"


# ---------------------------------------------------------------------------------------------
# fixtures: everything compiled once per session

@pytest.fixture(scope="session")
def arm64_prefix(macos_prefixes):
    return macos_prefixes("arm64")


@pytest.fixture(scope="session")
def x86_64_prefix(macos_prefixes):
    return macos_prefixes("x86_64")


@pytest.fixture(scope="session")
def universal2_prefix(macos_prefixes):
    return macos_prefixes("universal2")


@pytest.fixture(scope="session")
def libfoo(tmp_path_factory, zig: Zig) -> Path:
    """arm64 libfoo.dylib with install name @rpath/libfoo.dylib, in a provider-like directory."""
    where = tmp_path_factory.mktemp("libfoo") / "foo_native" / "lib" / "libfoo.dylib"
    return build_dylib(zig, "arm64", where, FOO_C, "@rpath/libfoo.dylib")


@pytest.fixture(scope="session")
def bundle(tmp_path_factory, zig: Zig, arm64_prefix) -> Path:
    """An lld-16 MH_BUNDLE with chained fixups calling libacme (absolute install name)."""
    out = tmp_path_factory.mktemp("bundle") / "_core.cpython-311-darwin.so"
    return build_bundle_lld(zig, "arm64", out, calls=["acme_add"], links=[arm64_prefix.lib])


def flip_byte(src: Path, dst: Path, offset: int) -> Path:
    data = bytearray(src.read_bytes())
    data[offset] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def text_section_offset(path: Path) -> int:
    """File offset of __TEXT,__text of a thin file (read with macholib)."""
    header = MachO(str(path)).headers[0]
    for lc, cmd, sections in header.commands:
        if lc.cmd == mach_o.LC_SEGMENT_64 and cmd.segname.rstrip(b"\0") == b"__TEXT":
            for s in sections:
                if s.sectname.rstrip(b"\0") == b"__text":
                    return s.offset
    raise AssertionError(f"no __text in {path}")


def resign_with_requirements(src: Path, dst: Path, *, corrupt_slot2: bool = False) -> Path:
    """Re-sign a thin 64-bit signed file the way codesign does ad hoc: SuperBlob with a
    CodeDirectory (two special slots) and an empty requirements blob, whose hash goes in special
    slot 2. Test-only, to exercise the verifier's special-slot check; not a general signer."""
    data = bytearray(src.read_bytes())
    _fat, (sl,) = ms._parse(bytes(data))
    (cs,) = [c for c in sl.commands if c.cmd == ms.LC_CODE_SIGNATURE]
    dataoff, _ = struct.unpack_from("<2I", data, cs.offset + 8)
    ident = code_signature_info(src)[sl.arch]["code_directories"][0]["identifier"].encode() + b"\0"
    page, nspecial = 1 << 12, 2
    nslots = -(-dataoff // page)
    requirements = struct.pack(">3I", ms.CSMAGIC_REQUIREMENTS, 12, 0)
    cd_header = 88
    hash_offset = cd_header + len(ident) + nspecial * 32
    cd_len = hash_offset + nslots * 32
    sig_len = 12 + 2 * 8 + cd_len + len(requirements)
    # new datasize in LC_CODE_SIGNATURE, and __LINKEDIT grown to cover it
    struct.pack_into("<I", data, cs.offset + 12, sig_len)
    for c in sl.commands:
        if c.cmd == ms.LC_SEGMENT_64 and data[c.offset + 8:c.offset + 18] == b"__LINKEDIT":
            fileoff = struct.unpack_from("<Q", data, c.offset + 40)[0]
            struct.pack_into("<Q", data, c.offset + 48, dataoff + sig_len - fileoff)
    code = bytes(data[:dataoff])
    req_hash = hashlib.sha256(requirements).digest()
    if corrupt_slot2:
        req_hash = bytes(32)[:-1] + b"\x01"
    cd = struct.pack(">9I4BI", ms.CSMAGIC_CODEDIRECTORY, cd_len, 0x20400, 0x2, hash_offset,
                     cd_header, nspecial, nslots, dataoff, 32, 2, 0, 12, 0)
    cd += struct.pack(">3I", 0, 0, 0) + struct.pack(">Q", 0) + struct.pack(">3Q", 0, 0, 0)
    assert len(cd) == cd_header
    cd += ident + req_hash + bytes(32)  # special slot 2 then slot 1 (slot -n first)
    cd += b"".join(hashlib.sha256(code[i:i + page]).digest() for i in range(0, dataoff, page))
    superblob = struct.pack(">5I", ms.CSMAGIC_EMBEDDED_SIGNATURE, sig_len, 2, 0, 28)
    superblob += struct.pack(">2I", 2, 28 + cd_len) + cd + requirements
    assert len(superblob) == sig_len
    dst.write_bytes(code + superblob)
    return dst


# ---------------------------------------------------------------------------------------------
# builders and the signature verifier

def test_arm64_prefix_is_a_signed_dylib_with_its_absolute_install_name(arm64_prefix):
    assert arm64_prefix.link.is_symlink() and arm64_prefix.link.resolve() == arm64_prefix.lib
    assert (arm64_prefix.include / "acme.h").is_file()
    pc = (arm64_prefix.root / "lib" / "pkgconfig" / "acme.pc").read_text()
    assert f"prefix={arm64_prefix.root}" in pc
    info = load_commands(arm64_prefix.lib)
    assert list(info) == ["arm64"]
    lc = info["arm64"]
    assert lc["filetype"] == MH_DYLIB
    assert lc["id"] == arm64_prefix.install_name == str(arm64_prefix.lib)
    assert lc["dylibs"] == ["/usr/lib/libSystem.B.dylib"]
    assert lc["signed"] and lc["rpaths"] == []
    assert verify_code_signature(arm64_prefix.lib) == []
    (cd,) = code_signature_info(arm64_prefix.lib)["arm64"]["code_directories"]
    assert cd["flags"] & 0x2, "zig signs ad hoc"
    assert cd["hash_type"] == 2 and cd["identifier"] == arm64_prefix.lib.name
    assert b"3.1.4" in arm64_prefix.lib.read_bytes()


def test_verifier_rejects_a_flipped_byte_in_text(arm64_prefix, tmp_path):
    lib = arm64_prefix.lib
    tampered = flip_byte(lib, tmp_path / lib.name, text_section_offset(lib) + 3)
    problems = verify_code_signature(tampered)
    assert len(problems) == 1 and "page hashes do not match (pages 0;" in problems[0], problems


def test_verifier_rejects_edits_of_load_commands_and_of_the_signature(arm64_prefix, tmp_path):
    lib = arm64_prefix.lib
    data = lib.read_bytes()
    # an edited install name (what a relinker does without re-signing)
    at = data.index(b"/lib/libacme.3.dylib")
    renamed = tmp_path / "renamed.dylib"
    renamed.write_bytes(data[:at] + b"/lib/libacme.4.dylib" + data[at + 20:])
    assert load_commands(renamed)["arm64"]["id"].endswith("libacme.4.dylib")
    assert any("page hashes do not match" in p for p in verify_code_signature(renamed))
    # a flipped byte inside the stored page hashes
    sig = code_signature_info(lib)["arm64"]
    flipped = flip_byte(lib, tmp_path / "sig.dylib", sig["dataoff"] + sig["datasize"] // 2)
    assert verify_code_signature(flipped)
    # a truncated file
    short = tmp_path / "short.dylib"
    short.write_bytes(data[:-100])
    assert any("runs past the slice" in p for p in verify_code_signature(short))


def test_verifier_checks_the_requirements_special_slot(arm64_prefix, tmp_path):
    good = resign_with_requirements(arm64_prefix.lib, tmp_path / "good.dylib")
    assert verify_code_signature(good) == []
    info = code_signature_info(good)["arm64"]
    assert info["slots"] == [0, 2] and info["code_directories"][0]["n_special_slots"] == 2
    bad = resign_with_requirements(arm64_prefix.lib, tmp_path / "bad.dylib", corrupt_slot2=True)
    problems = verify_code_signature(bad)
    assert len(problems) == 1 and "special slot 2 (requirements)" in problems[0], problems


@pytest.mark.skipif(shutil.which("llvm-install-name-tool-14") is None,
                    reason="cross-check with another signer: llvm-install-name-tool-14 absent")
def test_verifier_accepts_what_llvm_install_name_tool_re_signs(arm64_prefix, tmp_path):
    copy = tmp_path / "copy.dylib"
    shutil.copy(arm64_prefix.lib, copy)
    subprocess.run(["llvm-install-name-tool-14", "-id", "@rpath/libacme-sw0.dylib", "-add_rpath",
                    "@loader_path/x", str(copy)], check=True)
    assert load_commands(copy)["arm64"]["id"] == "@rpath/libacme-sw0.dylib"
    assert verify_code_signature(copy) == []


def test_x86_64_output_is_unsigned(x86_64_prefix):
    lc = load_commands(x86_64_prefix.lib)["x86_64"]
    assert lc["id"] == x86_64_prefix.install_name and not lc["signed"]
    assert verify_code_signature(x86_64_prefix.lib) == [
        f"{x86_64_prefix.lib} [x86_64]: no LC_CODE_SIGNATURE"]
    assert verify_code_signature(x86_64_prefix.lib, unsigned_ok={"x86_64"}) == []


def test_fat_file_parses_with_macholib_and_the_independent_reader(universal2_prefix):
    lib = universal2_prefix.lib
    macho = MachO(str(lib))
    assert macho.fat
    assert [h.header.cputype for h in macho.headers] == [0x01000007, 0x0100000C]
    assert all(h.offset % (1 << 14) == 0 for h in macho.headers)
    assert macho_archs(lib) == ["x86_64", "arm64"]
    info = load_commands(lib)
    assert {a: i["id"] for a, i in info.items()} == {
        "x86_64": universal2_prefix.install_name, "arm64": universal2_prefix.install_name}
    assert all(i["fat"] for i in info.values())
    assert verify_code_signature(lib, unsigned_ok={"x86_64"}) == []
    assert verify_code_signature(lib) == [f"{lib} [x86_64]: no LC_CODE_SIGNATURE"]


def test_fat_slice_tampering_is_found_in_that_slice_only(universal2_prefix, tmp_path):
    lib = universal2_prefix.lib
    arm64 = next(h for h in MachO(str(lib)).headers if h.header.cputype == 0x0100000C)
    tampered = flip_byte(lib, tmp_path / "fat.dylib", arm64.offset + 200 + arm64.header.sizeofcmds)
    problems = verify_code_signature(tampered, unsigned_ok={"x86_64"})
    assert len(problems) == 1 and "[arm64]" in problems[0], problems


def test_make_fat_refuses_duplicates_and_fat_inputs(arm64_prefix, universal2_prefix, tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        make_fat(tmp_path / "dup", [arm64_prefix.lib, arm64_prefix.lib])
    with pytest.raises(ValueError, match="already a fat file"):
        make_fat(tmp_path / "fat", [universal2_prefix.lib])


def macholib_view(path: Path) -> dict[str, dict]:
    names = {0x01000007: "x86_64", 0x0100000C: "arm64"}
    out = {}
    for h in MachO(str(path)).headers:
        view = {"id": None, "dylibs": [], "rpaths": [], "filetype": h.header.filetype}
        for lc, cmd, data in h.commands:
            text = data.rstrip(b"\0").decode() if isinstance(data, bytes) else None
            if lc.cmd == mach_o.LC_ID_DYLIB:
                view["id"] = text
            elif lc.cmd in (mach_o.LC_LOAD_DYLIB, mach_o.LC_LOAD_WEAK_DYLIB,
                            mach_o.LC_REEXPORT_DYLIB, mach_o.LC_LAZY_LOAD_DYLIB,
                            mach_o.LC_LOAD_UPWARD_DYLIB):
                view["dylibs"].append(text)
            elif lc.cmd == mach_o.LC_RPATH:
                view["rpaths"].append(text)
        out[names[h.header.cputype]] = view
    return out


def test_load_commands_agree_with_macholib(arm64_prefix, universal2_prefix, libfoo, bundle,
                                           tmp_path, zig):
    ext = build_extension(zig, "arm64", tmp_path, calls=["foo", "acme_add"],
                          links=[libfoo, arm64_prefix.lib],
                          rpaths=["@loader_path/../foo_native/lib", "/opt/elsewhere"])
    for path in (arm64_prefix.lib, universal2_prefix.lib, libfoo, bundle, ext):
        ours = {a: {k: i[k] for k in ("id", "dylibs", "rpaths", "filetype")}
                for a, i in load_commands(path).items()}
        assert ours == macholib_view(path), path
    lc = load_commands(ext)["arm64"]
    # zig does not keep the command line's order of dylibs: compare as a set
    assert sorted(lc["dylibs"]) == sorted(["/usr/lib/libSystem.B.dylib", "@rpath/libfoo.dylib",
                                           arm64_prefix.install_name])
    assert lc["rpaths"] == ["@loader_path/../foo_native/lib", "/opt/elsewhere"]


def test_extension_exports_only_pyinit_and_leaves_python_undefined(tmp_path, zig, arm64_prefix):
    ext = build_extension(zig, "arm64", tmp_path, calls=["acme_add"], links=[arm64_prefix.lib])
    assert ext.name == "_core.cpython-311-darwin.so"
    macho = MachO(str(ext))
    table = SymbolTable(macho, macho.headers[0])
    defined = {name for _, name in table.extdefsyms}
    undefined = {name for _, name in table.undefsyms}
    assert b"_PyInit__core" in defined
    assert {b"_PyLong_FromLong", b"_acme_add", b"_getenv"} <= undefined
    assert load_commands(ext)["arm64"]["filetype"] == MH_DYLIB
    assert verify_code_signature(ext) == []


def test_lld_bundle_has_chained_fixups_and_a_valid_signature(bundle, arm64_prefix):
    lc = load_commands(bundle)["arm64"]
    assert lc["filetype"] == MH_BUNDLE == 8
    assert LC_DYLD_CHAINED_FIXUPS == 0x80000034 and LC_DYLD_CHAINED_FIXUPS in lc["commands"]
    assert lc["chained_fixups"] and lc["id"] is None and lc["dylinker"] is None
    assert lc["dylibs"] == ["/usr/lib/libSystem.B.dylib", arm64_prefix.install_name]
    assert verify_code_signature(bundle) == []
    assert MachO(str(bundle)).headers[0].header.filetype == mach_o.MH_BUNDLE


def test_x86_64_lld_bundle_is_unsigned(tmp_path, zig, x86_64_prefix):
    out = build_bundle_lld(zig, "x86_64", tmp_path / "_core.so", calls=["acme_add"],
                           links=[x86_64_prefix.lib])
    lc = load_commands(out)["x86_64"]
    assert lc["filetype"] == MH_BUNDLE and lc["chained_fixups"] and not lc["signed"]


def test_header_padding_is_reported(arm64_prefix, bundle):
    """zig leaves 4096 bytes after the load commands; lld (like ld64) only 32."""
    assert load_commands(arm64_prefix.lib)["arm64"]["header_padding"] >= 1024
    assert load_commands(bundle)["arm64"]["header_padding"] < 256


# ---------------------------------------------------------------------------------------------
# the dyld oracle

def install(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


@pytest.fixture(scope="session")
def ext_no_rpath(tmp_path_factory, zig: Zig, libfoo: Path) -> Path:
    """An extension linking @rpath/libfoo.dylib with no LC_RPATH at all."""
    return build_extension(zig, "arm64", tmp_path_factory.mktemp("ext-norpath"), calls=["foo"],
                           links=[libfoo])


@pytest.fixture(scope="session")
def ext_rpath(tmp_path_factory, zig: Zig, libfoo: Path) -> Path:
    """An extension linking @rpath/libfoo.dylib with LC_RPATH @loader_path/../lib."""
    return build_extension(zig, "arm64", tmp_path_factory.mktemp("ext-rpath"), calls=["foo"],
                           links=[libfoo], rpaths=["@loader_path/../lib"])


def test_oracle_rpath_without_lc_rpath_resolves_only_by_a_preloaded_install_name(
        tmp_path, ext_no_rpath, libfoo, arm64_prefix):
    site_a, site_b = tmp_path / "site-a", tmp_path / "site-b"
    provider = install(libfoo, site_a / "foo_native" / "lib" / "libfoo.dylib")
    ext = install(ext_no_rpath, site_b / "consumer" / ext_no_rpath.name)

    alone = dyld_resolves(site_b)
    link = alone.link(ext, "@rpath/libfoo.dylib")
    assert link.how is None and link.detail == "no LC_RPATH in the load chain"
    assert not alone.ok
    assert alone.how(ext, "/usr/lib/libSystem.B.dylib") == "system"

    # a preloaded image with another install name does not help
    other = dyld_resolves(site_b, preloaded=[arm64_prefix.lib])
    assert other.how(ext, "@rpath/libfoo.dylib") is None

    preloaded = dyld_resolves(site_b, preloaded=[provider])
    link = preloaded.link(ext, "@rpath/libfoo.dylib")
    assert link.how == "by-install-name" and link.target == provider.resolve(), str(preloaded)
    assert preloaded.ok, str(preloaded)

    # both sites as roots: the provider's own image resolves too, the consumer still needs preload
    both = dyld_resolves([site_a, site_b])
    assert both.how(provider, "/usr/lib/libSystem.B.dylib") == "system"
    assert both.how(ext, "@rpath/libfoo.dylib") is None


def test_oracle_rpath_loader_path_resolves_by_rpath(tmp_path, ext_rpath, libfoo):
    site = tmp_path / "site"
    provider = install(libfoo, site / "lib" / "libfoo.dylib")
    ext = install(ext_rpath, site / "consumer" / ext_rpath.name)
    report = dyld_resolves(site)
    link = report.link(ext, "@rpath/libfoo.dylib")
    assert link.how == "by-rpath" and link.target == provider.resolve(), str(report)
    assert "@loader_path/../lib" in link.detail
    assert report.ok, str(report)
    # preloading wins over the rpath search (dyld checks loaded install names first)
    elsewhere = install(libfoo, tmp_path / "elsewhere" / "libfoo.dylib")
    first = dyld_resolves(site, preloaded=[elsewhere])
    link = first.link(ext, "@rpath/libfoo.dylib")
    assert link.how == "by-install-name" and link.target == elsewhere.resolve()
    # the rpath leads nowhere once the library is gone
    (site / "lib" / "libfoo.dylib").unlink()
    gone = dyld_resolves(site)
    link = gone.link(ext, "@rpath/libfoo.dylib")
    assert link.how is None and any("no such file" in t for t in link.tried), str(gone)


def test_oracle_rpath_stack_includes_the_loaders_rpaths(tmp_path, zig, libfoo):
    """libbar (@rpath/libbar.dylib, no LC_RPATH) needs @rpath/libfoo.dylib: found through the
    LC_RPATH of the extension that loaded libbar, not when libbar is loaded by itself."""
    site = tmp_path / "site"
    foo = install(libfoo, site / "foo" / "libfoo.dylib")
    bar = build_dylib(zig, "arm64", site / "bar" / "libbar.dylib", BAR_C, "@rpath/libbar.dylib",
                      links=[libfoo])
    ext = build_extension(zig, "arm64", site / "pkg", calls=["bar"], links=[bar],
                          rpaths=["@loader_path/../bar", "@loader_path/../foo"])
    report = dyld_resolves(site / "pkg")
    assert report.how(ext, "@rpath/libbar.dylib") == "by-rpath"
    via_loader = report.link(bar, "@rpath/libfoo.dylib")
    assert via_loader.how == "by-rpath" and via_loader.target == foo.resolve()
    assert f"of {ext.resolve()}" in via_loader.detail, via_loader.detail
    alone = dyld_resolves(site / "bar")
    assert alone.how(bar, "@rpath/libfoo.dylib") is None


def test_oracle_absolute_loader_path_and_architectures(tmp_path, zig, arm64_prefix,
                                                       x86_64_prefix):
    site = tmp_path / "site"
    # an absolute install name resolves while the prefix exists
    ext = build_extension(zig, "arm64", site / "a", calls=["acme_add"], links=[arm64_prefix.lib])
    assert dyld_resolves(site / "a").how(ext, arm64_prefix.install_name) == "by-path"
    missing = build_dylib(zig, "arm64", tmp_path / "gone" / "libgone.dylib", FOO_C,
                          str(tmp_path / "gone" / "libgone.dylib"))
    ext_gone = build_extension(zig, "arm64", site / "g", calls=["foo"], links=[missing])
    missing.unlink()
    link = dyld_resolves(site / "g").link(ext_gone, str(missing))
    assert link.how is None and link.detail == "absolute path not found"
    # an @loader_path/ install name
    lp = build_dylib(zig, "arm64", site / "b" / "libs" / "libfoo.dylib", FOO_C,
                     "@loader_path/libs/libfoo.dylib")
    ext_b = build_extension(zig, "arm64", site / "b", calls=["foo"], links=[lp])
    link = dyld_resolves(site / "b").link(ext_b, "@loader_path/libs/libfoo.dylib")
    assert link.how == "by-path" and link.target == lp.resolve()
    # an x86_64-only library in the rpath directory is skipped for an arm64 image
    stub = build_dylib(zig, "arm64", tmp_path / "stub" / "libacme.3.dylib",
                       "int acme_add(int a, int b) { return a + b; }\n", "@rpath/libacme.3.dylib")
    ext_c = build_extension(zig, "arm64", site / "c", calls=["acme_add"], links=[stub],
                            rpaths=["@loader_path/lib"])
    install(x86_64_prefix.lib, site / "c" / "lib" / "libacme.3.dylib")
    link = dyld_resolves(site / "c").link(ext_c, "@rpath/libacme.3.dylib")
    assert link.how is None and "incompatible architecture" in link.tried[0], link
    install(stub, site / "c" / "lib" / "libacme.3.dylib")
    assert dyld_resolves(site / "c").how(ext_c, "@rpath/libacme.3.dylib") == "by-rpath"


def test_oracle_weak_links_may_be_missing(tmp_path, zig, libfoo):
    site = tmp_path / "site"
    ext = build_bundle_lld(zig, "arm64", site / "pkg" / "_core.so", calls=["foo"],
                           extra_ld_args=["-weak_library", str(libfoo)])
    report = dyld_resolves(site)
    link = report.link(ext, "@rpath/libfoo.dylib")
    assert link.command == "LC_LOAD_WEAK_DYLIB" and link.how is None
    assert report.ok, str(report)


def test_oracle_universal2_is_checked_per_architecture(tmp_path, universal2_prefix):
    site = tmp_path / "site"
    lib = install(universal2_prefix.lib, site / "libacme.3.dylib")
    report = dyld_resolves(site)
    assert {link.arch for link in report.links} == {"x86_64", "arm64"}
    assert report.ok and report.how(lib, "/usr/lib/libSystem.B.dylib") == "system"
    assert {link.arch for link in dyld_resolves(site, arch="arm64").links} == {"arm64"}


def test_missing_ziglang_fails_rather_than_skips(monkeypatch):
    real = ms.importlib.util.find_spec
    monkeypatch.setattr(ms.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ziglang" else real(name, *a))
    with pytest.raises(pytest.fail.Exception, match="ziglang"):
        ms._require_ziglang()
