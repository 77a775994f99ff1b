"""Focused tests of sharewheel's pure functions: ABI policies, unique names, METADATA edits, the
`__init__.py` hook block, the manifest and wheel file names. No mocks, no subprocesses."""

from __future__ import annotations

import ast
import email.parser
import email.policy
import itertools
import json

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.version import Version

from sharewheel import hooks
from sharewheel.abi import BUILTIN_TEMPLATES, AbiPolicy, narrow
from sharewheel.errors import SharewheelError
from sharewheel.hooks import (
    BLOCK_END,
    BLOCK_START,
    init_block,
    insert_block,
    remove_block,
)
from sharewheel.manifest import MANIFEST_NAME, Link, Manifest, ProvidedLibrary, Provides
from sharewheel.metadata import add_requirements
from sharewheel.naming import UNIQUE_MARK, library_stem, link_name, unique_name
from sharewheel.wheelfile import WheelName

# --- sharewheel.abi -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["major", "minor", "exact"])
def test_builtin_policies_parse_to_their_templates(name: str) -> None:
    policy = AbiPolicy.parse(name)
    assert policy.template == BUILTIN_TEMPLATES[name]
    assert policy.name == name
    assert AbiPolicy.parse(policy.template) == policy  # the spelled-out template is the same policy
    assert AbiPolicy.parse(policy.template).name == name  # and is shown by its short name


def test_custom_template_keeps_its_text_as_name() -> None:
    policy = AbiPolicy.parse(">={version},<{major}.{minor}.99")
    assert policy.template == ">={version},<{major}.{minor}.99"
    assert policy.name == policy.template


SPECIFIERS = [
    # policy, version, specifier, series
    ("major", "3.1.4", ">=3.1.4,==3.*", "3"),
    ("major", "3.2.0", ">=3.2.0,==3.*", "3"),
    ("major", "4.0.0", ">=4.0.0,==4.*", "4"),
    ("major", "3.1.4.post1", ">=3.1.4.post1,==3.*", "3"),
    ("minor", "3.1.4", ">=3.1.4,==3.1.*", "3.1"),
    ("minor", "3.2.0", ">=3.2.0,==3.2.*", "3.2"),
    ("minor", "4.0.0", ">=4.0.0,==4.0.*", "4.0"),
    ("minor", "3.1.4.post1", ">=3.1.4.post1,==3.1.*", "3.1"),
    ("exact", "3.1.4", "==3.1.4", "3.1.4"),
    ("exact", "3.2.0", "==3.2.0", "3.2.0"),
    ("exact", "4.0.0", "==4.0.0", "4.0.0"),
    ("exact", "1!2.0", "==1!2.0", "1!2.0"),
    ("exact", "3.1.4.post1", "==3.1.4.post1", "3.1.4.post1"),
    (">={version},<{major}.{minor}.99", "3.1.4", ">=3.1.4,<3.1.99", "3.1"),
    (">={version},=={major}.{minor}.{micro}.*", "3.1.4", ">=3.1.4,==3.1.4.*", "3.1.4"),
    (">={version},=={major}.{minor}.{micro}.*", "3.1.4.post1", ">=3.1.4.post1,==3.1.4.*", "3.1.4"),
    (">={version}", "3.1.4", ">=3.1.4", "all"),
    (">={version}", "4.0.0", ">=4.0.0", "all"),
    ("==={version}", "3.1.4", "===3.1.4", "3.1.4"),
    ("major", "4", ">=4,==4.*", "4"),  # missing release parts count as 0
    ("minor", "4", ">=4,==4.0.*", "4.0"),
]


@pytest.mark.parametrize("policy,version,specifier,series", SPECIFIERS)
def test_specifier_and_series(policy: str, version: str, specifier: str, series: str) -> None:
    abi = AbiPolicy.parse(policy)
    assert abi.specifier(Version(version)) == SpecifierSet(specifier)
    assert abi.series(Version(version)) == series


def test_requirement_combines_distribution_and_specifier() -> None:
    requirement = AbiPolicy.parse("major").requirement("acme-native", Version("3.1.4"))
    assert requirement.name == "acme-native"
    assert requirement.specifier == SpecifierSet(">=3.1.4,==3.*")
    assert requirement.marker is None and not requirement.extras


TEMPLATES = ["major", "minor", "exact", ">={version}", ">={version},<{major}.{minor}.99",
             ">={version},=={major}.{minor}.{micro}.*", "==={version}"]
VERSIONS = ["3.1.4", "3.1.4.post1", "3.2.0", "4.0.0", "1!2.0"]


@pytest.mark.parametrize("template,version", [
    (t, v) for t in TEMPLATES for v in VERSIONS
])
def test_specifier_admits_the_version_it_was_made_from(template: str, version: str) -> None:
    """A consumer repaired against provider V must accept provider V."""
    assert Version(version) in AbiPolicy.parse(template).specifier(Version(version))


@pytest.mark.parametrize("template", [
    *TEMPLATES,
    "~={version}",
])
def test_same_series_exactly_when_the_newer_release_satisfies_the_older(template: str) -> None:
    """The series decides the unique name: two releases share it iff consumers of the older one
    accept the newer one (otherwise one loaded copy would serve consumers it does not fit, or a
    compatible upgrade would break consumers by renaming the library)."""
    abi = AbiPolicy.parse(template)
    for older, newer in itertools.combinations(sorted(map(Version, VERSIONS[:4])), 2):
        compatible = newer in abi.specifier(older)
        assert (abi.series(older) == abi.series(newer)) == compatible, (template, str(older), str(newer))


@pytest.mark.parametrize("text", ["garbage{x}", "garbage", ">={version},<{patch}", "{}", "{0}", "{version!r}",
                                  "{version:>10}", ">={version}, and more",
                                  "{version", ">={version},=={major", "=={version}}"])  # unbalanced braces
def test_invalid_templates_raise(text: str) -> None:
    with pytest.raises(SharewheelError) as error:
        AbiPolicy.parse(text)
    assert repr(text) in str(error.value)


def test_narrow_keeps_extras_and_marker() -> None:
    existing = Requirement('acme-native[ext,tools]>=3.0; python_version >= "3.8"')
    narrowed = narrow(existing, Requirement("acme-native>=3.1.4,==3.*"))
    assert narrowed.name == "acme-native"
    assert narrowed.extras == {"ext", "tools"}
    assert str(narrowed.marker) == 'python_version >= "3.8"'
    assert narrowed.specifier == SpecifierSet(">=3.0,>=3.1.4,==3.*")
    assert existing.specifier == SpecifierSet(">=3.0")  # the argument is not changed
    assert Version("3.2.0") in narrowed.specifier and Version("3.0.5") not in narrowed.specifier


def test_narrow_keeps_an_extra_marker() -> None:
    narrowed = narrow(Requirement('acme-native; extra == "fast"'), Requirement("acme-native==3.*"))
    assert narrowed.marker is not None and narrowed.marker.evaluate({"extra": "fast"})
    assert not narrowed.marker.evaluate({"extra": "slow"})
    assert narrowed.specifier == SpecifierSet("==3.*")


# --- sharewheel.naming ------------------------------------------------------------------------------


def test_unique_name_matches_the_documented_example() -> None:
    # README: acme-native 3.1.4 (major policy, series 3) ships libacme-sw1cd33bec.so. Consumers
    # already in the wild link to this name, so it must never change.
    assert unique_name("acme-native", "3", "libacme.so.3") == "libacme-sw1cd33bec.so"


def test_unique_name_is_stable_within_a_series() -> None:
    name = unique_name("acme-native", "3", "libacme.so.3")
    # other spellings of the distribution, other soname versions of one library: the same name
    for distribution in ("acme-native", "Acme_Native", "acme.native", "ACME-NATIVE"):
        for original in ("libacme.so.3", "libacme.so.3.1.4", "libacme.so", name):
            assert unique_name(distribution, "3", original) == name, (distribution, original)


def test_unique_name_differs_across_series_distributions_and_libraries() -> None:
    names = {
        unique_name("acme-native", "3", "libacme.so.3"),
        unique_name("acme-native", "4", "libacme.so.4"),
        unique_name("acme-native", "3.1", "libacme.so.3"),
        unique_name("acme-fork", "3", "libacme.so.3"),
        unique_name("acme-native", "3", "libacme_extra.so.3"),
    }
    assert len(names) == 5
    assert all(n.startswith("libacme") and n.endswith(".so") and UNIQUE_MARK in n for n in names)


def test_unique_name_depends_only_on_distribution_series_and_stem() -> None:
    distributions, series, originals = ["acme-native", "acme-fork"], ["3", "4", "all"], \
        ["libacme.so.3", "libacme.so.4.0", "libacme.so", "libbeta.so.1", "libbeta.so"]
    for (d1, s1, o1), (d2, s2, o2) in itertools.product(itertools.product(distributions, series, originals), repeat=2):
        same_key = (d1, s1, library_stem(o1)) == (d2, s2, library_stem(o2))
        assert (unique_name(d1, s1, o1) == unique_name(d2, s2, o2)) == same_key, (d1, s1, o1, d2, s2, o2)


@pytest.mark.parametrize("original,stem,suffix", [
    ("libacme.so.3", "libacme", ".so"),
    ("libacme.so.3.1.4", "libacme", ".so"),
    ("libacme.so", "libacme", ".so"),
    ("libstdc++.so.6", "libstdc++", ".so"),
    ("libpython3.11.so.1.0", "libpython3.11", ".so"),
    ("libfoo-1.2.so", "libfoo-1.2", ".so"),
    ("libacme.3.dylib", "libacme", ".dylib"),
    ("acme.dll", "acme", ".dll"),
])
def test_library_stem_round_trips_unique_names(original: str, stem: str, suffix: str) -> None:
    assert library_stem(original) == stem
    unique = unique_name("acme-native", "3", original)
    assert unique.startswith(stem + UNIQUE_MARK) and unique.endswith(suffix)
    assert library_stem(unique) == stem
    assert unique_name("acme-native", "3", unique) == unique  # naming a unique name again changes nothing


@pytest.mark.parametrize("filename,expected", [
    ("libacme.so.3", "acme"),
    ("libacme.so", "acme"),
    ("libstdc++.so.6", "stdc++"),
    ("libacme.3.dylib", "acme"),
    ("acme.dll", "acme"),
    ("libacme-sw1cd33bec.so", "acme-sw1cd33bec"),
    ("libacme-sw1cd33bec.dylib", "acme-sw1cd33bec"),
    ("libfoo-swift.so.1", "foo-swift"),
])
def test_link_name(filename: str, expected: str) -> None:
    assert link_name(filename) == expected


def test_link_name_of_a_unique_name_links_that_file() -> None:
    unique = unique_name("acme-native", "3", "libacme.so.3")
    assert f"lib{link_name(unique)}.so" == unique  # -l<link name> finds exactly the unique file


# --- sharewheel.metadata.add_requirements -----------------------------------------------------------

WANTED = [Requirement("acme-native>=3.1.4,==3.*")]
BODY = (
    "# acme-consumer\n\n"
    "Requires-Dist: not-a-header (this is the long description)\n"
    "trailing spaces   \n\n\n"
    "\ttabbed line\n"
    "unicode: \u00e9\u00e8 \u2603\n"
    "no final newline"
)


def headers(text: str) -> email.message.Message:
    return email.parser.Parser(policy=email.policy.compat32).parsestr(text)


def requires_dist(text: str) -> list[str]:
    return [" ".join(v.split()) for v in headers(text).get_all("Requires-Dist") or []]


def test_adds_a_requirement_before_the_body() -> None:
    text = "Metadata-Version: 2.1\nName: acme-consumer\nVersion: 1.0.0\n\n" + BODY
    result = add_requirements(text, WANTED, "w.whl")
    assert result == ("Metadata-Version: 2.1\nName: acme-consumer\nVersion: 1.0.0\n"
                      "Requires-Dist: acme-native==3.*,>=3.1.4\n\n" + BODY)
    assert requires_dist(result) == ["acme-native==3.*,>=3.1.4"]


def test_adds_a_requirement_to_metadata_without_body() -> None:
    result = add_requirements("Metadata-Version: 2.1\nName: c\nVersion: 1\n", WANTED, "w.whl")
    assert result == "Metadata-Version: 2.1\nName: c\nVersion: 1\nRequires-Dist: acme-native==3.*,>=3.1.4\n"


def test_adds_after_the_last_existing_requirement_and_leaves_others_alone() -> None:
    text = ("Metadata-Version: 2.1\nName: c\nVersion: 1\nRequires-Dist: numpy>=1.20\n"
            "Requires-Dist: click; extra == \"cli\"\nDescription-Content-Type: text/markdown\n\n" + BODY)
    result = add_requirements(text, WANTED, "w.whl")
    assert result == ("Metadata-Version: 2.1\nName: c\nVersion: 1\nRequires-Dist: numpy>=1.20\n"
                      "Requires-Dist: click; extra == \"cli\"\nRequires-Dist: acme-native==3.*,>=3.1.4\n"
                      "Description-Content-Type: text/markdown\n\n" + BODY)


def test_narrows_an_existing_requirement_instead_of_adding_one() -> None:
    text = "Metadata-Version: 2.1\nName: c\nRequires-Dist: Acme_Native>=3.0\n\n" + BODY
    result = add_requirements(text, WANTED, "w.whl")
    [only] = requires_dist(result)
    requirement = Requirement(only)
    assert requirement.name == "Acme_Native"  # the build's spelling is kept
    assert requirement.specifier == SpecifierSet(">=3.0,>=3.1.4,==3.*")
    assert result.endswith("\n\n" + BODY)


def test_narrows_an_existing_requirement_with_extras() -> None:
    text = "Metadata-Version: 2.1\nName: c\nRequires-Dist: acme-native[ext]>=3.0\n\n" + BODY
    [only] = requires_dist(add_requirements(text, WANTED, "w.whl"))
    requirement = Requirement(only)
    assert requirement.extras == {"ext"}
    assert requirement.specifier == SpecifierSet(">=3.0,>=3.1.4,==3.*")


def test_conditional_requirement_is_kept_and_an_unconditional_one_added() -> None:
    text = 'Metadata-Version: 2.1\nName: c\nRequires-Dist: acme-native>=3.0; extra == "x"\n\n' + BODY
    requirements = [Requirement(r) for r in requires_dist(add_requirements(text, WANTED, "w.whl"))]
    assert len(requirements) == 2
    conditional, unconditional = requirements
    assert str(conditional.marker) == 'extra == "x"'
    assert conditional.specifier == SpecifierSet(">=3.0,>=3.1.4,==3.*")
    assert unconditional.marker is None and unconditional.name == "acme-native"
    assert unconditional.specifier == SpecifierSet(">=3.1.4,==3.*")


def test_applying_twice_changes_nothing() -> None:
    text = ('Metadata-Version: 2.1\nName: c\nRequires-Dist: numpy\nRequires-Dist: acme-native[ext]>=3.0; extra == "x"\n'
            "Requires-Dist: other-native\n\n" + BODY)
    once = add_requirements(text, WANTED, "w.whl")
    assert once != text
    assert add_requirements(once, WANTED, "w.whl") == once


def test_folded_header_lines() -> None:
    text = ("Metadata-Version: 2.1\nName: c\nLicense: Copyright (c) acme\n        All rights kept.\n"
            "\tMore license text.\nRequires-Dist: acme-native\n  >=3.0\nKeywords: a,b\n\n" + BODY)
    result = add_requirements(text, WANTED, "w.whl")
    # the folded License field is kept as written
    assert "License: Copyright (c) acme\n        All rights kept.\n\tMore license text.\n" in result
    # the folded requirement was understood as one requirement and narrowed, not duplicated
    [only] = requires_dist(result)
    assert Requirement(only).specifier == SpecifierSet(">=3.0,>=3.1.4,==3.*")
    assert headers(result)["Keywords"] == "a,b"
    assert result.endswith("\n\n" + BODY)


def test_several_wanted_requirements() -> None:
    wanted = [*WANTED, Requirement("beta-native>=1.2,==1.*")]
    result = add_requirements("Metadata-Version: 2.1\nName: c\n\n" + BODY, wanted, "w.whl")
    assert requires_dist(result) == ["acme-native==3.*,>=3.1.4", "beta-native==1.*,>=1.2"]
    assert add_requirements(result, wanted, "w.whl") == result


def test_invalid_existing_requirement_names_the_wheel() -> None:
    text = "Metadata-Version: 2.1\nName: c\nRequires-Dist: acme-native >>= 3\n\n" + BODY
    with pytest.raises(SharewheelError) as error:
        add_requirements(text, WANTED, "acme_consumer-1.0.0-cp311-cp311-linux_x86_64.whl")
    assert "acme_consumer-1.0.0-cp311-cp311-linux_x86_64.whl" in str(error.value)
    assert "acme-native >>= 3" in str(error.value)


def test_long_description_with_crlf_is_kept_byte_for_byte() -> None:
    body = "Windows README\r\nsecond line\r\n"
    result = add_requirements("Metadata-Version: 2.1\nName: c\n\n" + body, WANTED, "w.whl")
    assert result.endswith("\n\n" + body)


# --- sharewheel.hooks: the hook block -------------------------------------------------------------

BLOCK = init_block(f"from . import {hooks.HOOK_MODULE}  # noqa: F401")
HOOK_IMPORT = f"from . import {hooks.HOOK_MODULE}"


def check_hooked(source: str, result: str) -> ast.Module:
    """The result compiles, holds one block, keeps the docstring, and imports the hook before any code."""
    compile(result, "__init__.py", "exec")
    assert result.count(BLOCK_START) == 1 and result.count(BLOCK_END) == 1
    module = ast.parse(result)
    assert ast.get_docstring(module, clean=False) == ast.get_docstring(ast.parse(source), clean=False)
    body = [n for n in module.body if not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    if ast.get_docstring(module) is not None:
        body = body[1:]
    first = body[0]
    assert isinstance(first, ast.ImportFrom) and first.level == 1 and \
        [a.name for a in first.names] == [hooks.HOOK_MODULE], ast.dump(first)
    return module


def test_block_goes_after_docstring_and_future_imports() -> None:
    source = ('"""acme_consumer: a package.\n\nWith a long docstring.\n"""\n'
              "from __future__ import annotations\n"
              "from __future__ import (\n    division,\n    generators,\n)\n"
              "\n"
              "from acme_consumer._core import add\n")
    result = insert_block(source, BLOCK)
    check_hooked(source, result)
    head, _, tail = result.partition(BLOCK)
    assert head == source[: source.index(")\n") + 2]  # up to and with the last __future__ line
    assert tail == "\nfrom acme_consumer._core import add\n"


def test_block_goes_first_without_docstring() -> None:
    source = "import os\n\nfrom acme_consumer._core import add\n"
    result = insert_block(source, BLOCK)
    assert result == BLOCK + source
    check_hooked(source, result)


def test_block_after_a_docstring_without_trailing_newline() -> None:
    source = '"""Only a docstring."""'
    result = insert_block(source, BLOCK)
    assert result == source + "\n" + BLOCK
    check_hooked(source, result)


def test_block_in_an_empty_init() -> None:
    result = insert_block("", BLOCK)
    assert result == BLOCK
    compile(result, "__init__.py", "exec")


def test_replacing_the_block_is_idempotent() -> None:
    source = '"""Doc."""\nfrom __future__ import annotations\nimport os\n'
    once = insert_block(source, BLOCK)
    assert insert_block(once, BLOCK) == once
    other = init_block("from . import _other_hook  # noqa: F401")
    replaced = insert_block(once, other)
    assert replaced == insert_block(source, other)  # the old block is gone, not stacked
    assert HOOK_IMPORT not in replaced and replaced.count(BLOCK_START) == 1
    compile(replaced, "__init__.py", "exec")


def test_block_from_an_earlier_repair_elsewhere_in_the_file_moves_to_the_top() -> None:
    source = '"""Doc."""\nimport os\n' + BLOCK + "x = 1\n"
    result = insert_block(source, BLOCK)
    assert result == '"""Doc."""\n' + BLOCK + "import os\nx = 1\n"
    check_hooked(source, result)


@pytest.mark.parametrize("source", [
    '"""Doc."""\nfrom __future__ import annotations\nimport os\n',
    "import os\n",
    "",
    '"""Doc."""\n',
    "#!/usr/bin/env python\n# comment\nx = 1\n",
])
def test_remove_block_restores_the_source(source: str) -> None:
    assert remove_block(insert_block(source, BLOCK)) == source
    assert remove_block(source) == source


def test_remove_block_without_end_marker_leaves_the_source() -> None:
    source = f"{BLOCK_START}\nimport os\n"
    assert remove_block(source) == source


@pytest.mark.parametrize("source", [
    '"""Doc."""\n\x0c\nfrom __future__ import annotations\nimport os\n',
    '"""Doc.\x0cMore doc."""\nimport os\n',
], ids=["form-feed-line", "form-feed-in-docstring"])
def test_block_placement_with_form_feeds(source: str) -> None:
    check_hooked(source, insert_block(source, BLOCK))


# --- sharewheel.manifest --------------------------------------------------------------------------

WHERE = "acme_native-3.1.4.dist-info/sharewheel.json"


def full_manifest() -> Manifest:
    library = ProvidedLibrary("libacme.so.3", "libacme-sw1cd33bec.so", "acme_native/lib/libacme-sw1cd33bec.so", "ab" * 32)
    provides = Provides("acme-native", "3.1.4", "acme_native", "major", "3", "manylinux_2_5_x86_64",
                        (library,), ("beta-native",))
    link = Link("acme_native/lib/libacme-sw1cd33bec.so", "libbeta-sw00000000.so", "libbeta.so.1", "beta-native",
                "1.2", "beta-native==1.*,>=1.2")
    return Manifest(provides, (link,), ("acme_native.libs/libz-0123abcd.so.1",))


@pytest.mark.parametrize("manifest", [full_manifest(), Manifest(),
                                      Manifest(links=full_manifest().links, vendored=("a.libs/b.so",))],
                         ids=["provider", "empty", "consumer"])
def test_manifest_round_trip(manifest: Manifest) -> None:
    text = manifest.dumps()
    assert Manifest.loads(text, WHERE) == manifest
    data = json.loads(text)
    assert data["schema"] == 1 and data["generator"].startswith("sharewheel ")
    assert Manifest.loads(text, WHERE).dumps() == text  # stable text, sorted keys


def manifest_data() -> dict:
    return json.loads(full_manifest().dumps())


def broken(edit) -> str:  # type: ignore[no-untyped-def]
    data = manifest_data()
    edit(data)
    return json.dumps(data)


BROKEN = {
    "not-json": "{not json",
    "empty-file": "",
    "json-list": "[]",
    "json-null": "null",
    "schema-2": broken(lambda d: d.update(schema=2)),
    "schema-string": broken(lambda d: d.update(schema="1")),
    "no-schema": broken(lambda d: d.pop("schema")),
    "provides-missing-package": broken(lambda d: d["provides"].pop("package")),
    "provides-missing-libraries": broken(lambda d: d["provides"].pop("libraries")),
    "library-missing-sha256": broken(lambda d: d["provides"]["libraries"][0].pop("sha256")),
    "link-missing-needed": broken(lambda d: d["links"][0].pop("needed")),
    "version-number": broken(lambda d: d["provides"].update(version=3)),
    "library-name-null": broken(lambda d: d["provides"]["libraries"][0].update(name=None)),
    "link-binary-number": broken(lambda d: d["links"][0].update(binary=1)),
    "provides-list": broken(lambda d: d.update(provides=[])),
    "provides-string": broken(lambda d: d.update(provides="acme")),
    "libraries-object": broken(lambda d: d["provides"].update(libraries={"name": "x"})),
    "no-libraries": broken(lambda d: d["provides"].update(libraries=[])),
    "links-string": broken(lambda d: d.update(links="x")),
    "links-null": broken(lambda d: d.update(links=None)),
    "vendored-number": broken(lambda d: d.update(vendored=5)),
}
ACCEPTED_WRONG_TYPES = {
    "vendored-string": broken(lambda d: d.update(vendored="acme_native.libs/libz.so.1")),
    "vendored-numbers": broken(lambda d: d.update(vendored=[1, 2])),
    "requires-string": broken(lambda d: d["provides"].update(requires="beta-native")),
    "requires-objects": broken(lambda d: d["provides"].update(requires=[{"name": "beta-native"}])),
}


@pytest.mark.parametrize("text", BROKEN.values(), ids=BROKEN.keys())
def test_broken_manifest_is_one_clear_error(text: str) -> None:
    with pytest.raises(SharewheelError) as error:
        Manifest.loads(text, WHERE)
    message = str(error.value)
    assert message.startswith(f"{WHERE}: ")
    assert MANIFEST_NAME in message


def test_broken_manifest_messages_say_what_is_wrong() -> None:
    def message(text: str) -> str:
        with pytest.raises(SharewheelError) as error:
            Manifest.loads(text, WHERE)
        return str(error.value)

    assert "not valid JSON" in message(BROKEN["not-json"])
    assert "schema 2" in message(BROKEN["schema-2"]) and "schema 1" in message(BROKEN["schema-2"])
    assert "package" in message(BROKEN["provides-missing-package"])
    assert "sha256" in message(BROKEN["library-missing-sha256"])
    assert "needed" in message(BROKEN["link-missing-needed"])
    assert "no library" in message(BROKEN["no-libraries"])


@pytest.mark.parametrize("text", ACCEPTED_WRONG_TYPES.values(), ids=ACCEPTED_WRONG_TYPES.keys())
def test_list_of_strings_fields_reject_other_types(text: str) -> None:
    with pytest.raises(SharewheelError) as error:
        Manifest.loads(text, WHERE)
    assert str(error.value).startswith(f"{WHERE}: ")


# --- sharewheel.wheelfile.WheelName -----------------------------------------------------------------


def test_wheel_name_parse() -> None:
    name = WheelName.parse("acme_consumer-1.0.0-cp311-cp311-linux_x86_64.whl")
    assert name.distribution == "acme_consumer"
    assert name.version == "1.0.0"
    assert name.build == ""
    assert name.tags == frozenset({Tag("cp311", "cp311", "linux_x86_64")})
    assert name.platforms == ["linux_x86_64"]
    assert name.dist_info == "acme_consumer-1.0.0.dist-info"


@pytest.mark.parametrize("filename", [
    "acme_consumer-1.0.0-cp311-cp311-linux_x86_64.whl",
    "acme_native-3.1.4-py3-none-manylinux1_x86_64.manylinux_2_5_x86_64.whl",
    "pkg-1.0-py2.py3-none-any.whl",
    "pkg-1.0-1abc-py3-none-any.whl",
    "pkg-2.0.post1-cp311-abi3-linux_aarch64.whl",
])
def test_wheel_name_filename_round_trip(filename: str) -> None:
    name = WheelName.parse(filename)
    assert name.filename == filename
    assert WheelName.parse(name.filename) == name


def test_wheel_name_build_tag() -> None:
    name = WheelName.parse("pkg-1.0-1abc-py3-none-any.whl")
    assert name.build == "1abc"
    assert name.tags == frozenset({Tag("py3", "none", "any")})
    assert name.dist_info == "pkg-1.0.dist-info"


def test_wheel_name_with_platforms() -> None:
    name = WheelName.parse("acme_consumer-1.0.0-cp311-cp311-linux_x86_64.whl")
    repaired, lines = name.with_platforms(["manylinux_2_5_x86_64", "manylinux1_x86_64"])
    assert repaired.filename == "acme_consumer-1.0.0-cp311-cp311-manylinux1_x86_64.manylinux_2_5_x86_64.whl"
    assert lines == ["cp311-cp311-manylinux1_x86_64", "cp311-cp311-manylinux_2_5_x86_64"]
    assert repaired.tags == frozenset({Tag("cp311", "cp311", "manylinux1_x86_64"),
                                       Tag("cp311", "cp311", "manylinux_2_5_x86_64")})
    assert (repaired.distribution, repaired.version, repaired.build) == ("acme_consumer", "1.0.0", "")
    assert repaired.dist_info == name.dist_info
    assert name.platforms == ["linux_x86_64"]  # the original is unchanged


def test_wheel_name_with_platforms_keeps_every_interpreter_and_abi() -> None:
    name = WheelName.parse("pkg-1.0-py2.py3-none-linux_x86_64.whl")
    repaired, lines = name.with_platforms(["manylinux2014_x86_64"])
    assert lines == ["py2-none-manylinux2014_x86_64", "py3-none-manylinux2014_x86_64"]
    assert repaired.filename == "pkg-1.0-py2.py3-none-manylinux2014_x86_64.whl"


@pytest.mark.parametrize("filename", ["notawheel.zip", "pkg-1.0.whl", "pkg-1.0-py3-none.whl",
                                      "pkg-not a version-py3-none-any.whl", "-1.0-py3-none-any.whl"])
def test_wheel_name_rejects_non_wheel_names(filename: str) -> None:
    with pytest.raises(SharewheelError) as error:
        WheelName.parse(filename)
    assert str(error.value).startswith(f"{filename}: not a wheel file name")
