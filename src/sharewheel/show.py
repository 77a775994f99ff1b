"""`sharewheel show`: what repair would do to a wheel, or what it did."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sharewheel.adapters import RepairJob, adapter_for
from sharewheel.platforms import keys_of
from sharewheel.plugin import load_plugins
from sharewheel.registry import Registry
from sharewheel.repair import (
    RepairOptions,
    errors_name,
    extract_for_repair,
    plan_links,
    read_manifest,
)
from sharewheel.unvendor import Unvendoring, describe_saved, plan_unvendoring
from sharewheel.vendored import vendored_copies
from sharewheel.wheelfile import InputWheel, work_dir, write_wheel


@dataclass(frozen=True)
class ShowReport:
    wheel: str
    platforms: tuple[str, ...]
    binaries: dict[str, list[dict[str, Any]]]
    unvendor: list[dict[str, Any]] = field(default_factory=list)  # copies providers would replace
    saved: int = 0
    replaceable: list[dict[str, Any]] = field(default_factory=list)  # copies a plugin's wheels could replace

    def as_json(self) -> dict[str, Any]:
        return {
            "wheel": self.wheel, "platforms": list(self.platforms), "binaries": self.binaries,
            "unvendor": self.unvendor, "saved": self.saved, "replaceable": self.replaceable,
        }

    def as_text(self) -> str:
        lines = [f"{self.wheel}: repair tags it {', '.join(self.platforms)}"]
        for binary, needs in self.binaries.items():
            lines.append(f"  {binary}")
            for need in needs:
                state = need["state"]
                if state == "provided":
                    detail = f"provided by {need['provider']} {need['version']} as {need['unique_name']}"
                    if need.get("plugin"):
                        detail += f" (described by plugin {need['plugin']})"
                elif state == "external":
                    detail = f"external, repair vendors {need['path']}"
                elif state == "policy":
                    detail = "allowed by the platform policy"
                elif state == "vendored":
                    detail = "vendored in the wheel"
                else:
                    detail = "missing: not provided, not found"
                lines.append(f"    {need['name']}: {detail}")
        if self.unvendor:
            lines.append(f"  vendored copies repair removes (saving {describe_saved(self.saved)}):")
            for copy in self.unvendor:
                why = (f"replaced by {copy['provider']} {copy['version']}" if copy.get("provider")
                       else "needed only by the replaced copies")
                lines.append(f"    {copy['path']}: {why}")
        for copy in self.replaceable:
            lines.append(
                f"  {copy['path']}: a vendored copy that {' or '.join(copy['distributions'])} could replace "
                f"(plugin {copy['plugin']}; repair with --provider NAME)"
            )
        return "\n".join(lines)


def show_wheel(wheel_path: Path, providers: tuple[Path | str, ...], plugins: tuple[Path, ...] = ()) -> ShowReport:
    with errors_name(wheel_path), InputWheel.open(wheel_path) as wheel, \
            work_dir() as tmp:
        adapter = adapter_for(wheel.platforms, wheel_path.name)
        tree = Path(tmp, "tree").resolve()
        extract_for_repair(wheel, tree, all_python=adapter.os == "windows")
        previous = read_manifest(tree, wheel.dist_info, wheel_path.name)
        binaries = adapter.binaries(tree)
        needed = [name for info in binaries.values() for name in info.needed]  # a linux_<arch> tag names no libc
        registry = Registry.discover(providers, keys_of(wheel.platforms, needed), plugin_files=plugins)
        unvendoring = plan_unvendoring(tree, binaries, registry, wheel.name.distribution)
        plan = plan_links(wheel.name.distribution, binaries, registry, RepairOptions(), previous, unvendoring)
        unvendoring.apply(tree)  # show the wheel as repair would leave it
        slim = wheel_path if adapter.os == "linux" else write_wheel(  # delocate and delvewheel read a wheel file
            tree, wheel.dist_info, Path(tmp, "slim", wheel_path.name), compress=False)
        job = RepairJob(
            wheel=slim, tree=tree, distribution=wheel.name.distribution,
            platforms=tuple(wheel.platforms), relink=plan.relink, fallback_dirs=plan.fallback_dirs,
            exclude=plan.exclude, provider_platforms=plan.provider_platforms,
        )
        states, platforms = adapter.show(job)
    report: dict[str, list[dict[str, Any]]] = {}
    for binary, needs in states.items():
        entries = []
        for need in needs:
            entry: dict[str, Any] = {"name": need.name, "state": need.state}
            if need.state == "provided":
                match = unvendoring.stand_in(need.name) or registry.lookup(need.name)
                assert match is not None
                entry.update(
                    provider=match.provider.distribution,
                    version=match.provider.provides.version,
                    unique_name=match.library.unique_name,
                )
                if match.provider.plugin is not None:
                    entry["plugin"] = match.provider.plugin.name
            if need.path:
                entry["path"] = need.path
            entries.append(entry)
        report[binary] = entries
    replaced = {unvendoring.copies[k]: m for k, m in unvendoring.replaced.items()}
    copies = [
        {"path": path, **({"provider": replaced[path].provider.distribution,
                           "version": replaced[path].provider.provides.version} if path in replaced else {})}
        for path in unvendoring.removed
    ]
    return ShowReport(wheel_path.name, platforms, report, copies, unvendoring.saved,
                      _replaceable(binaries, unvendoring, adapter.os, plugins))


def _replaceable(
    binaries: dict[str, Any], unvendoring: Unvendoring, os_name: str, plugin_files: tuple[Path, ...]
) -> list[dict[str, Any]]:
    """Vendored copies no given provider replaces, but a plugin's third-party wheels could."""
    found = []
    plugins = load_plugins(plugin_files)
    for copy in vendored_copies((path, 0) for path in binaries):
        if copy.path in unvendoring.removed:
            continue
        plugin = next((p for p in plugins if p.could_provide(os_name, copy.originals)), None)
        if plugin is not None:
            found.append({"path": copy.path, "plugin": plugin.name, "distributions": list(plugin.distributions)})
    return found
