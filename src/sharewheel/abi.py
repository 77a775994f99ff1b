"""ABI policies: which provider versions a consumer built against one version may run with.

The provider author declares the policy, because only they know their library's ABI promises.
A policy is a specifier template rendered with the version found at repair time; it also
defines the *ABI series*, the part of the version that names binary-compatible releases and
therefore enters the library's unique name (see :mod:`sharewheel.naming`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sharewheel.errors import SharewheelError

BUILTIN_TEMPLATES = {
    "major": ">={version},=={major}.*",
    "minor": ">={version},=={major}.{minor}.*",
    "exact": "=={version}",
}
_FIELDS = ("version", "major", "minor", "micro")
_PLACEHOLDER = re.compile(r"{([^{}]*)}")


def parse_version(text: str, what: str = "version") -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise SharewheelError(f"{what} {text!r} is not a valid version (PEP 440)") from None


def _fields(version: Version) -> dict[str, str]:
    """Template fields; {major} carries the epoch (`1!2`), so `=={major}.*` admits `1!2.0`."""
    release = (*version.release, 0, 0)
    epoch = f"{version.epoch}!" if version.epoch else ""
    return {
        "version": str(version),
        "major": f"{epoch}{release[0]}",
        "minor": str(release[1]),
        "micro": str(release[2]),
    }


@dataclass(frozen=True)
class AbiPolicy:
    """A named policy (major, minor, exact) or a custom specifier template.

    Custom templates use the placeholders {version}, {major}, {minor} and {micro}, e.g.
    ``>={version},<{major}.{minor}.99``. Their series is the finest of {micro}, {minor},
    {major} they use; ``=={version}`` makes every release its own series, ``~={version}``
    makes a series of all releases sharing every release component but the last, and a
    template without any field but {version} (``>={version}``) makes all releases one series.
    """

    template: str

    @classmethod
    def parse(cls, text: str) -> AbiPolicy:
        template = BUILTIN_TEMPLATES.get(text, text)
        used = set(_PLACEHOLDER.findall(template))
        unknown = sorted(used - set(_FIELDS))
        if unknown:
            raise SharewheelError(
                f"ABI policy {text!r}: unknown placeholder {{{unknown[0]}}} "
                f"(use major, minor, exact or a template with {{version}}, {{major}}, {{minor}}, {{micro}})"
            )
        policy = cls(template)
        try:
            policy.specifier(Version("1.2.3"))
        except (InvalidSpecifier, ValueError, IndexError, KeyError):  # str.format on a bad template
            raise SharewheelError(
                f"ABI policy {text!r} is not major, minor, exact or a valid specifier template"
            ) from None
        return policy

    @property
    def name(self) -> str:
        """The built-in name when the template is one, else the template itself."""
        for name, template in BUILTIN_TEMPLATES.items():
            if template == self.template:
                return name
        return self.template

    def specifier(self, version: Version) -> SpecifierSet:
        return SpecifierSet(self.template.format(**_fields(version)))

    def series(self, version: Version) -> str:
        """The ABI series of `version`: equal series means binary-compatible releases."""
        fields = _fields(version)
        used = set(_PLACEHOLDER.findall(self.template))
        if re.search(r"===?\s*{version}", self.template):
            return fields["version"]
        if re.search(r"~=\s*{version}", self.template):
            release = version.release[:-1] if len(version.release) > 1 else version.release
            epoch = f"{version.epoch}!" if version.epoch else ""
            return epoch + ".".join(map(str, release))
        if "micro" in used:
            return f"{fields['major']}.{fields['minor']}.{fields['micro']}"
        if "minor" in used:
            return f"{fields['major']}.{fields['minor']}"
        if "major" in used:
            return fields["major"]
        return "all"

    def requirement(self, distribution: str, version: Version) -> Requirement:
        return Requirement(f"{distribution}{self.specifier(version)}")


def narrow(existing: Requirement, wanted: Requirement) -> Requirement:
    """`existing` with `wanted`'s specifiers added; its extras and marker are kept."""
    narrowed = Requirement(str(existing))
    narrowed.specifier = existing.specifier & wanted.specifier
    return narrowed


def parse_requirement(text: str, where: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as e:
        raise SharewheelError(f"{where}: invalid requirement {text!r}: {str(e).splitlines()[0]}") from None


def same_project(a: str, b: str) -> bool:
    return canonicalize_name(a) == canonicalize_name(b)
