"""`sharewheel show`: what repair would do to a wheel, or what it did."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharewheel.adapters import RepairJob, adapter_for
from sharewheel.platforms import keys_of
from sharewheel.registry import Registry
from sharewheel.repair import (
    RepairOptions,
    errors_name,
    extract_for_repair,
    plan_links,
    read_manifest,
)
from sharewheel.wheelfile import InputWheel, work_dir, write_wheel


@dataclass(frozen=True)
class ShowReport:
    wheel: str
    platforms: tuple[str, ...]
    binaries: dict[str, list[dict[str, Any]]]

    def as_json(self) -> dict[str, Any]:
        return {"wheel": self.wheel, "platforms": list(self.platforms), "binaries": self.binaries}

    def as_text(self) -> str:
        lines = [f"{self.wheel}: repair tags it {', '.join(self.platforms)}"]
        for binary, needs in self.binaries.items():
            lines.append(f"  {binary}")
            for need in needs:
                state = need["state"]
                if state == "provided":
                    detail = f"provided by {need['provider']} {need['version']} as {need['unique_name']}"
                elif state == "external":
                    detail = f"external, repair vendors {need['path']}"
                elif state == "policy":
                    detail = "allowed by the platform policy"
                elif state == "vendored":
                    detail = "vendored in the wheel"
                else:
                    detail = "missing: not provided, not found"
                lines.append(f"    {need['name']}: {detail}")
        return "\n".join(lines)


def show_wheel(wheel_path: Path, providers: tuple[Path | str, ...], plugins: tuple[Path, ...] = ()) -> ShowReport:
    with errors_name(wheel_path), InputWheel.open(wheel_path) as wheel, \
            work_dir() as tmp:
        adapter = adapter_for(wheel.platforms, wheel_path.name)
        registry = Registry.discover(providers, keys_of(wheel.platforms), plugin_files=plugins)
        tree = Path(tmp, "tree").resolve()
        extract_for_repair(wheel, tree)
        slim = write_wheel(tree, wheel.dist_info, Path(tmp, "slim", wheel_path.name), compress=False)
        previous = read_manifest(tree, wheel.dist_info, wheel_path.name)
        binaries = adapter.binaries(tree)
        plan = plan_links(wheel.name.distribution, binaries, registry, RepairOptions(), previous)
        job = RepairJob(
            wheel=slim, tree=tree, distribution=wheel.name.distribution,
            platforms=tuple(wheel.platforms), relink=plan.relink, fallback_dirs=plan.fallback_dirs,
            exclude=plan.exclude,
        )
        states, platforms = adapter.show(job)
    report: dict[str, list[dict[str, Any]]] = {}
    for binary, needs in states.items():
        entries = []
        for need in needs:
            entry: dict[str, Any] = {"name": need.name, "state": need.state}
            if need.state == "provided":
                match = registry.lookup(need.name)
                assert match is not None
                entry.update(
                    provider=match.provider.distribution,
                    version=match.provider.provides.version,
                    unique_name=match.library.unique_name,
                )
            if need.path:
                entry["path"] = need.path
            entries.append(entry)
        report[binary] = entries
    return ShowReport(wheel_path.name, platforms, report)
