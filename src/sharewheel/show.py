"""`sharewheel show` and `repair --dry-run --json`: the plan repair makes for a wheel, rendered.

Both render the :class:`~sharewheel.plan.Planned` that repair writes (sharewheel.plan), from the
same options and [tool.sharewheel] settings, so what they say is what repair does. show also
says, per binary, how each needed library is satisfied (as the OS tool judged it before
vendoring), what a provider wheel provides, and which vendored copies a plugin's wheels could
replace; a library that cannot be found is reported there rather than refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sharewheel.abi import AbiPolicy
from sharewheel.licenses import warn_missing
from sharewheel.manifest import Provides
from sharewheel.plan import Planned, RepairOptions, planned
from sharewheel.plugin import load_plugins
from sharewheel.unvendor import describe_saved
from sharewheel.vendored import vendored_copies

SCHEMA = 1


@dataclass(frozen=True)
class ShowReport:
    """A wheel's plan as JSON-ready data; `as_text` for people."""

    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return self.data

    def as_text(self) -> str:
        d = self.data
        if d["pure"]:
            return f"{d['wheel']}: pure Python (platform any): nothing to repair"
        lines = [f"{d['wheel']}: repair writes {d['output']}, tagged {', '.join(d['platforms'])}"]
        if d["provides"]:
            p = d["provides"]
            libraries = ", ".join(f"{lib['name']} as {lib['unique_name']}" for lib in p["libraries"])
            lines.append(f"  provides {libraries}: {p['distribution']} {p['version']}, ABI policy {p['abi']} "
                         f"(series {p['series']}: consumers require {p['requirement']})")
            if p["requires"]:
                lines.append(f"  requires the providers {', '.join(p['requires'])}")
        for binary, needs in d["binaries"].items():
            lines.append(f"  {binary}")
            for need in needs:
                lines.append(f"    {need['name']}: {_describe(need)}")
        if d["removed"]:
            lines.append(f"  vendored copies repair removes (saving {describe_saved(d['saved'])}):")
            for copy in d["removed"]:
                why = (f"replaced by {copy['provider']} {copy['version']}" if copy.get("provider")
                       else "needed only by the replaced copies")
                lines.append(f"    {copy['path']}: {why}")
        for path in d["vendored"]:
            source = d["vendored_from"].get(path)
            lines.append(f"  vendors {path}" + (f" (from {source})" if source else ""))
        if d["refusal"]:
            lines.append(f"  repair refuses this wheel: {d['refusal']}")
        for requirement in d["requirements"]:
            lines.append(f"  requires {requirement}")
        for notice in d.get("notices", ()):
            lines.append(f"  note: {notice}")
        for copy in d["replaceable"]:
            lines.append(
                f"  {copy['path']}: a vendored copy that {' or '.join(copy['distributions'])} could replace "
                f"(plugin {copy['plugin']}; repair with --provider NAME)"
            )
        return "\n".join(lines)


def _describe(need: dict[str, Any]) -> str:
    state = need["state"]
    if state == "provided":
        detail = f"provided by {need['provider']} {need['version']} as {need['unique_name']}"
        return detail + (f" (described by plugin {need['plugin']})" if need.get("plugin") else "")
    if state == "external":
        return f"external, repair vendors {need['path']}"
    if state == "policy":
        return "allowed by the platform policy"
    if state == "vendored":
        return "vendored in the wheel"
    return "missing: not provided, not found"


def show_wheel(wheel_path: Path, options: RepairOptions) -> ShowReport:
    """The plan repair makes for `wheel_path` with `options`; libraries not found are reported."""
    with planned(wheel_path, replace(options, dry_run=True, tolerate_missing=True)) as done:
        if done.outcome is not None:  # vendored libraries whose licence was not found (sharewheel.licenses)
            warn_missing(done.wheel.path.name, done.licenses, done.outcome.sources)
        return ShowReport(plan_data(done, Path("."), plugin_files=options.plugins))


def plan_data(done: Planned, out_dir: Path, *, plugin_files: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The plan as JSON data: what show --json and repair --dry-run --json print, and what the
    manifest of the real repair records (links, vendored)."""
    data: dict[str, Any] = {"schema": SCHEMA, "wheel": done.wheel.path.name, "output": done.output_name,
                            "pure": done.pure}
    empty: dict[str, Any] = {"platforms": list(done.wheel.platforms), "links": [], "removed": [], "saved": 0,
                             "vendored": [], "vendored_from": {}, "refusal": None, "requirements": [],
                             "binaries": {}, "provides": None,
                             "replaceable": [], "notices": []}
    if done.pure or done.plan is None or done.outcome is None or done.analysis is None:
        return {**data, **empty}
    from sharewheel.repair import usage_notices  # (repair imports this module)
    plan, outcome = done.plan, done.outcome
    unvendoring = plan.unvendoring
    replaced = {unvendoring.copies[k]: m for k, m in unvendoring.replaced.items()}
    binaries: dict[str, list[dict[str, Any]]] = {}
    for binary, needs in outcome.needs.items():
        entries = []
        for need in needs:
            entry: dict[str, Any] = {"name": need.name, "state": need.state}
            match = plan.matches.get((binary, need.name))
            if need.state == "provided" and match is not None:
                entry.update(provider=match.provider.distribution, version=match.provider.provides.version,
                             unique_name=match.library.unique_name)
                if match.provider.plugin is not None:
                    entry["plugin"] = match.provider.plugin.name
            if need.path:
                entry["path"] = need.path
            entries.append(entry)
        binaries[binary] = entries
    return {
        **data,
        "platforms": list(outcome.platforms),
        "links": [{"binary": link.binary, "original": link.original, "needed": link.needed,
                   "provider": link.provider, "version": link.version, "requirement": link.requirement}
                  for link in done.links],
        "removed": [{"path": path, **({"provider": replaced[path].provider.distribution,
                                       "version": replaced[path].provider.provides.version} if path in replaced else {})}
                    for path in unvendoring.removed],
        "saved": unvendoring.saved,
        "vendored": list(done.vendored),
        "vendored_from": {path: source for path, source in sorted(outcome.sources.items())},
        "refusal": outcome.refusal,
        "requirements": [str(r) for r in plan.requirements],
        "binaries": binaries,
        "provides": _provides(done.provides),
        "replaceable": _replaceable(done, plugin_files),
        "notices": list(usage_notices(plan)),  # linked providers' usage policies (sharewheel.plugin)
    }


def _provides(provides: Provides | None) -> dict[str, Any] | None:
    """What a provider wheel offers: its libraries, ABI policy and series, what a consumer of this
    release is made to require, and the providers it requires itself."""
    if provides is None:
        return None
    from packaging.version import Version

    requirement = AbiPolicy.parse(provides.abi).requirement(provides.distribution, Version(provides.version))
    return {
        "distribution": provides.distribution, "version": provides.version, "package": provides.package,
        "abi": provides.abi, "series": provides.series, "requirement": str(requirement),
        "libraries": [{"name": lib.name, "unique_name": lib.unique_name, "path": lib.path}
                      for lib in provides.libraries],
        "requires": list(provides.requires),
    }


def _replaceable(done: Planned, plugin_files: tuple[Path, ...]) -> list[dict[str, Any]]:
    """Vendored copies no given provider replaces, but a plugin's third-party wheels could."""
    assert done.analysis is not None and done.plan is not None
    copies = [c for c in vendored_copies((path, 0) for path in done.analysis.binaries)
              if c.path not in done.plan.unvendoring.removed]
    if not copies:
        return []
    plugins = load_plugins(plugin_files)
    found = []
    for copy in copies:
        plugin = next((p for p in plugins if p.could_provide(done.analysis.adapter.os, copy.originals)), None)
        if plugin is not None:
            found.append({"path": copy.path, "plugin": plugin.name, "distributions": list(plugin.distributions)})
    return found
