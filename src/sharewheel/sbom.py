"""sharewheel's CycloneDX 1.6 SBOM of a repaired or packed wheel: ``<dist-info>/sboms/sharewheel.cdx.json``.

Why a file of its own: PEP 770 gives each tool that adds to a wheel its own file under
``.dist-info/sboms/``, and auditwheel's ``auditwheel.cdx.json`` (Linux) names only the system
packages it vendored from. sharewheel's adds what only it knows: the providers a wheel now links
(distribution, version, the library's unique file and its SHA-256 from the provider's manifest,
the requirement added), every vendored copy with the SHA-256 of the bytes in the wheel and its
source package where the host's package database names it (Linux: the lookup auditwheel's SBOM
uses; delocate and delvewheel record none, which a property says), and for a provider wheel the
libraries it packages (licence from METADATA's ``License-Expression``).

Written for every repaired wheel on all three OSes (issue 17), also for a Linux wheel nothing was
linked in: auditwheel's own SBOM names only the copies whose package it finds, this one every copy.
The output is deterministic: sorted, no timestamp unless SOURCE_DATE_EPOCH is set, and a
serialNumber derived from the content (uuid5), so equal repairs give equal bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.parser import HeaderParser
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from packaging.utils import canonicalize_name

from sharewheel import __version__
from sharewheel.errors import InputWheelError
from sharewheel.files import sha256_hex
from sharewheel.manifest import Link, ProvidedLibrary, Provides

if TYPE_CHECKING:
    from sharewheel.plan import Planned

#: the file sharewheel writes, beside any other tool's in the PEP 770 directory
SBOM_PATH = "sboms/sharewheel.cdx.json"
_MAX_EARLIER = 16 << 20  # an earlier repair's SBOM larger than this is not read
#: namespace of the serialNumber's uuid5 (any fixed UUID: it only has to stay the same)
_SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://pypi.org/project/sharewheel/#sbom")


@dataclass(frozen=True)
class SourcePackage:
    """The system package a vendored file was copied from, as the host's package database names it."""

    name: str
    version: str
    purl: str  # pkg:deb/debian/libfoo1@1.2-3, as auditwheel's SBOM names it


@dataclass(frozen=True)
class ProviderLink:
    """One provided library a wheel links: the link and the library's manifest entry."""

    link: Link
    library: ProvidedLibrary


def pypi_purl(distribution: str, version: str, file_name: str | None = None) -> str:
    """``pkg:pypi/<name>@<version>`` (purl-spec's pypi type: normalized name), with the wheel file as qualifier."""
    purl = f"pkg:pypi/{quote(canonicalize_name(distribution), safe='')}@{quote(version, safe='')}"
    return purl + (f"?file_name={quote(file_name, safe='')}" if file_name else "")


def license_expression(metadata: Path) -> str | None:
    """METADATA's PEP 639 ``License-Expression``, if the wheel has one."""
    if not metadata.is_file():
        return None
    value = HeaderParser().parsestr(metadata.read_text(encoding="utf-8", errors="replace")).get("License-Expression")
    return (str(value).strip() or None) if value is not None else None


def write_repaired(done: Planned) -> Path | None:
    """The SBOM of a wheel `plan.apply` has just repaired in its work tree (see :func:`write_sbom`)."""
    assert done.analysis is not None and done.plan is not None and done.outcome is not None
    os_name = done.analysis.adapter.os
    by_unique = {(canonicalize_name(m.provider.distribution), m.library.unique_name): m.library
                 for m in done.plan.matches.values()}
    links = [ProviderLink(link, by_unique[canonicalize_name(link.provider), link.needed])
             for link in done.links if (canonicalize_name(link.provider), link.needed) in by_unique]
    vendored = set(done.vendored)
    sources = {rel: source for rel, source in done.outcome.sources.items() if rel in vendored}
    earlier = earlier_vendored(done.analysis.tree / done.wheel.dist_info / SBOM_PATH)
    return write_sbom(done.analysis.tree, done.wheel.dist_info, done.output_name, os_name=os_name, links=links,
                      vendored=vendored, packages=source_packages(os_name, sources), provides=done.provides,
                      originals={rel: Path(source).name for rel, source in sources.items()},
                      earlier={rel: c for rel, c in earlier.items() if rel not in sources})


def earlier_vendored(path: Path) -> dict[str, dict[str, Any]]:
    """What an earlier repair's SBOM (this file, in the input wheel) said of each vendored copy, by
    its path: carried over for the copies this repair keeps (it no longer knows where they came
    from), so that repairing a repaired wheel changes nothing. Only well-formed entries count."""
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() and not path.is_symlink() \
            and path.stat().st_size <= _MAX_EARLIER else {}
    except (OSError, ValueError):
        return {}
    found: dict[str, dict[str, Any]] = {}
    for component in _list(data.get("components") if isinstance(data, dict) else None):
        if not isinstance(component, dict):
            continue
        props = [{"name": p["name"], "value": p["value"]} for p in _list(component.get("properties"))
                 if isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("value"), str)
                 and p["name"].startswith("sharewheel:")]
        paths = [p["value"] for p in props if p["name"] == "sharewheel:vendored-path"]
        hashes = [h["content"] for h in _list(component.get("hashes"))
                  if isinstance(h, dict) and h.get("alg") == "SHA-256" and isinstance(h.get("content"), str)]
        if len(paths) == 1 and len(hashes) == 1 and isinstance(component.get("name"), str):
            found[paths[0]] = {"name": component["name"], "hashes": _sha256(hashes[0]), "properties": props,
                               **{k: component[k] for k in ("version", "purl") if isinstance(component.get(k), str)}}
    return found


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def source_packages(os_name: str, sources: Mapping[str, str]) -> dict[str, SourcePackage]:
    """Vendored tree path → the system package its source file came from (Linux only: delocate
    and delvewheel vendor from wherever the loader found a file, with no package database)."""
    if os_name != "linux" or not sources:
        return {}
    from sharewheel.adapters import manylinux

    found = manylinux.source_packages(sorted(set(sources.values())))
    return {rel: SourcePackage(*found[source]) for rel, source in sources.items() if source in found}


def write_sbom(
    tree: Path,
    dist_info: str,
    wheel_file: str,
    *,
    os_name: str,
    links: Iterable[ProviderLink],
    vendored: Iterable[str],
    packages: Mapping[str, SourcePackage],
    provides: Provides | None,
    originals: Mapping[str, str] | None = None,
    earlier: Mapping[str, dict[str, Any]] | None = None,
) -> Path | None:
    """Write the SBOM in `tree`; `packages` and `originals` map vendored tree paths to their source packages and the
    names they had where the OS tool found them. Returns the file written."""
    path = sbom_dir(tree, dist_info) / posixpath.basename(SBOM_PATH)
    if path.is_dir() or path.is_symlink():
        raise InputWheelError(f"{dist_info}/{SBOM_PATH} in the wheel is not a file: sharewheel writes its SBOM there")
    links = sorted(links, key=lambda p: (canonicalize_name(p.link.provider), p.library.unique_name, p.link.binary))
    sbom = build_sbom(tree, dist_info, wheel_file, os_name=os_name, links=links, vendored=vendored,
                      packages=packages, provides=provides, originals=originals or {}, earlier=earlier or {})
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(sbom, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def sbom_dir(tree: Path, dist_info: str) -> Path:
    """`<dist-info>/sboms` in the work tree, where each tool writes its SBOM (PEP 770); an input
    wheel holding something else there gets an error, not a traceback."""
    path = tree / dist_info / posixpath.dirname(SBOM_PATH)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise InputWheelError(f"{dist_info}/{posixpath.dirname(SBOM_PATH)} in the wheel is not a directory "
                              "(PEP 770 keeps SBOMs there)")
    return path


def build_sbom(
    tree: Path,
    dist_info: str,
    wheel_file: str,
    *,
    os_name: str,
    links: list[ProviderLink],
    vendored: Iterable[str],
    packages: Mapping[str, SourcePackage],
    provides: Provides | None,
    originals: Mapping[str, str],
    earlier: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """The CycloneDX document (a dict, ready for JSON)."""
    name, version = _name_version(tree / dist_info / "METADATA", wheel_file)
    licence = license_expression(tree / dist_info / "METADATA")
    wheel_ref = pypi_purl(name, version, wheel_file)
    wheel = {"type": "library", "bom-ref": wheel_ref, "name": name, "version": version, "purl": wheel_ref,
             **_licenses(licence)}
    components = [
        *(_provider_component(entries) for entries in _by_provider(links).values()),
        *(_vendored_component(tree, rel, f"{wheel_ref}#vendored:{rel}", os_name, packages.get(rel),
                              originals.get(rel), earlier.get(rel))
          for rel in sorted(set(vendored)) if (tree / rel).is_file()),
        *(_packaged_component(lib, f"{wheel_ref}#{lib.unique_name}", provides, licence)
          for lib in sorted(provides.libraries if provides else (), key=lambda lib: lib.unique_name)
          if provides is not None),
    ]
    refs = [c["bom-ref"] for c in components]
    metadata: dict[str, Any] = {
        "component": wheel,
        "tools": {"components": [{"type": "application", "name": "sharewheel", "version": __version__}]},
    }
    timestamp = _timestamp()
    if timestamp:
        metadata["timestamp"] = timestamp
    sbom: dict[str, Any] = {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": [{"ref": wheel_ref, "dependsOn": sorted(refs)}, *({"ref": r, "dependsOn": []} for r in refs)],
    }
    content = json.dumps(sbom, sort_keys=True).encode()
    sbom["serialNumber"] = uuid.uuid5(_SERIAL_NAMESPACE, hashlib.sha256(content).hexdigest()).urn
    return sbom


def _provider_component(entries: list[ProviderLink]) -> dict[str, Any]:
    """A provider distribution linked, its libraries (from its manifest) as its components."""
    first = entries[0].link
    ref = pypi_purl(first.provider, first.version)
    libraries = {
        entry.library.unique_name: _drop_empty({
            "type": "library",
            "bom-ref": f"{ref}#{entry.library.unique_name}",
            "name": entry.library.unique_name,
            "version": first.version,
            "hashes": _sha256(entry.library.sha256),
            "properties": _properties([("sharewheel:original-name", entry.library.name),
                                       ("sharewheel:path", entry.library.path)]),
        })
        for entry in entries
    }
    uses = sorted({(e.link.binary, e.link.original) for e in entries})
    return {
        "type": "library",
        "bom-ref": ref,
        "name": first.provider,
        "version": first.version,
        "purl": ref,
        "scope": "required",
        "components": list(libraries.values()),
        "properties": _properties([
            ("sharewheel:requirement", first.requirement),
            *(("sharewheel:linked-by", f"{binary} ({original})") for binary, original in uses),
        ]),
    }


def _vendored_component(tree: Path, rel: str, ref: str, os_name: str, package: SourcePackage | None,
                        original: str | None, earlier: dict[str, Any] | None) -> dict[str, Any]:
    """A vendored copy: its bytes' hash, and where it came from as far as anyone recorded it."""
    digest = sha256_hex(tree / rel)
    if original is None and earlier is not None and earlier["hashes"] == _sha256(digest):
        return {"type": "library", "bom-ref": ref, **earlier}  # kept as an earlier repair described it
    if package:
        source = package.purl
    elif original is None:
        source = "unknown: vendored by an earlier repair, which recorded none"
    elif os_name == "linux":
        source = "unknown: the host's package database does not list the file it was copied from"
    else:
        source = f"unknown: {'delocate' if os_name == 'macos' else 'delvewheel'} records no source package"
    return _drop_empty({
        "type": "library",
        "bom-ref": ref,
        "name": package.name if package else posixpath.basename(rel),
        "version": package.version if package else None,
        "purl": package.purl if package else None,
        "hashes": _sha256(digest),
        "properties": _properties([("sharewheel:vendored-path", rel), ("sharewheel:original-name", original or ""),
                                   ("sharewheel:source-package", source)]),
    })


def _packaged_component(lib: ProvidedLibrary, ref: str, provides: Provides,
                        licence: str | None) -> dict[str, Any]:
    """A library a provider wheel packages."""
    return _drop_empty({
        "type": "library",
        "bom-ref": ref,
        "name": lib.unique_name,
        "version": provides.version,
        "hashes": _sha256(lib.sha256),  # (the manifest's, computed from this file by apply)
        **_licenses(licence),
        "properties": _properties([("sharewheel:original-name", lib.name), ("sharewheel:path", lib.path),
                                   ("sharewheel:abi", provides.abi), ("sharewheel:series", provides.series)]),
    })


def _name_version(metadata: Path, wheel_file: str) -> tuple[str, str]:
    """The distribution's name and version as METADATA spells them (the file name's, failing that)."""
    if metadata.is_file():
        headers = HeaderParser().parsestr(metadata.read_text(encoding="utf-8", errors="replace"))
        if headers.get("Name") and headers.get("Version"):
            return str(headers["Name"]).strip(), str(headers["Version"]).strip()
    name, version = wheel_file.split("-")[:2]
    return name, version


def _by_provider(links: list[ProviderLink]) -> dict[str, list[ProviderLink]]:
    grouped: dict[str, list[ProviderLink]] = {}
    for entry in links:
        grouped.setdefault(canonicalize_name(entry.link.provider), []).append(entry)
    return grouped


def _sha256(hex_digest: str) -> list[dict[str, str]]:
    return [{"alg": "SHA-256", "content": hex_digest}] if hex_digest else []


def _licenses(expression: str | None) -> dict[str, Any]:
    return {"licenses": [{"expression": expression}]} if expression else {}


def _properties(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs if value]


def _drop_empty(component: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in component.items() if v not in (None, [], "")}


def _timestamp() -> str | None:
    """SOURCE_DATE_EPOCH as ISO 8601 (None without it: an SBOM stamped with now is never reproducible;
    an invalid value is left to the wheel writer, which names it)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    try:
        seconds = int(epoch)
        return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        return None
