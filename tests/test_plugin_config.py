"""Plugins as users write them: a --plugin file, a third party's entry point, the README's
example; and every bad input — an unknown --provider name, a plugin that is not TOML, a plugin
with a wrong key, a plugin whose globs match nothing — is one error line, exit 1, nothing written."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, BuildEnv, one, repair, requires_dist, sharewheel
from test_plugins_linux import DDOT, OPENBLAS, build_consumer

from sharewheel.plugin import Plugin


@pytest.fixture(scope="module")
def blas_consumer(pypi_wheel, build_env: BuildEnv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A consumer of libscipy_openblas64_.so, linked against the real wheel's file."""
    where = tmp_path_factory.mktemp("plugin-config")
    lib_dir = where / "provider"
    import zipfile

    with zipfile.ZipFile(pypi_wheel(OPENBLAS)) as zf:
        zf.extractall(lib_dir)
    base = lib_dir / "scipy_openblas64"
    return build_consumer(build_env, where / "src", "blas_config", DDOT, [f"-I{base}/include"],
                          [f"-L{base}/lib", "-lscipy_openblas64_"])


def refused(wheel: Path, out: Path, *args: str | Path, env: dict[str, str] | None = None) -> str:
    """Run a repair that must fail: exit 1, one `sharewheel: error:` line, nothing in OUT."""
    result = sharewheel("repair", wheel, "-w", out, *args, env=env, check=False)
    assert result.returncode == 1, result
    lines = [l for l in result.stderr.splitlines() if not l.startswith("sharewheel: registry:")]
    assert len(lines) == 1 and lines[0].startswith("sharewheel: error: "), result.stderr
    assert not out.exists() or not list(out.iterdir())
    return lines[0]


def test_unknown_provider_name(blas_consumer: Path, tmp_path: Path) -> None:
    line = refused(blas_consumer, tmp_path / "out", "--provider", "no-such-native-lib")
    assert "--provider no-such-native-lib: no such file, directory or installed distribution" in line


def test_plugin_file_that_is_not_toml(blas_consumer: Path, pypi_wheel, tmp_path: Path) -> None:
    plugin = tmp_path / "broken.toml"
    plugin.write_text('name = "broken"\ndistributions = ["scipy-openblas64"\n')
    line = refused(blas_consumer, tmp_path / "out", "--plugin", plugin, "--provider", pypi_wheel(OPENBLAS))
    assert f"plugin file {plugin}: invalid TOML" in line


def test_plugin_whose_globs_match_nothing(blas_consumer: Path, pypi_wheel, tmp_path: Path) -> None:
    plugin = tmp_path / "wrong-layout.toml"
    plugin.write_text(textwrap.dedent("""\
        name = "wrong-layout"
        distributions = ["scipy-openblas64"]
        abi = "minor"
        load = "import"
        [libraries]
        linux = ["scipy_openblas64/bin/*.so"]
        """))
    line = refused(blas_consumer, tmp_path / "out", "--plugin", plugin, "--provider", pypi_wheel(OPENBLAS))
    assert "plugin wrong-layout" in line and "no file in the wheel matches its linux libraries (scipy_openblas64/bin/*.so)" in line


GOOD = {
    "name": "t", "distributions": ["scipy-openblas64"], "abi": "minor", "load": "import",
    "libraries": {"linux": ["scipy_openblas64/lib/*.so"]},
}


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": "blue"}, "unknown key 'colour'"),
    ({"load": "dlopen"}, "load must be one of import, preload, pkgconfig-initpy, not 'dlopen'"),
    ({"abi": "{mayor}"}, "abi: ABI policy '{mayor}': unknown placeholder {mayor}"),
    ({"distributions": "scipy-openblas64"}, "distributions must be a non-empty list of strings"),
    ({"libraries": {"beos": ["x.so"]}}, "libraries: unknown OS 'beos'"),
    ({"libraries": {"linux": ["../x.so"]}}, "libraries.linux: '../x.so' is not a relative wheel path"),
    ({"load": "preload", "module": "x"}, 'module is only used with load = "import"'),
    ({"version-regex": "OpenBLAS [0-9.]+"}, "version-regex must have exactly one group"),
    ({"abi": None}, "missing key 'abi'"),
])
def test_invalid_plugin_is_one_error_naming_it_and_the_key(change: dict, message: str, blas_consumer: Path,
                                                          tmp_path: Path) -> None:
    data = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    lines = []
    for key, value in data.items():
        if key != "libraries":
            lines.append(f"{key} = {value!r}".replace("'", '"') if not isinstance(value, list)
                         else f"{key} = {[str(v) for v in value]!r}".replace("'", '"'))
    lines.append("[libraries]")
    lines += [f"{os_name} = {globs!r}".replace("'", '"') for os_name, globs in data["libraries"].items()]
    plugin = tmp_path / "bad.toml"
    plugin.write_text("\n".join(lines) + "\n")
    line = refused(blas_consumer, tmp_path / "out", "--plugin", plugin)
    assert f"plugin 't' ({plugin}): {message}" in line


def readme_plugin() -> str:
    """The Python plugin module of the README's ten-line example."""
    readme = (ROOT / "README.md").read_text()
    return re.search(r"```python\n# libfoo_sharewheel.py\n(.*?)```", readme, re.DOTALL).group(1)


def test_readme_example_is_a_valid_plugin() -> None:
    namespace: dict = {}
    exec(readme_plugin(), namespace)  # noqa: S102 - the README's own example, as a user would run it
    plugin = Plugin.from_mapping(namespace["PLUGIN"], "README")
    assert plugin.matches("libfoo_native") and plugin.load == "preload"
    assert plugin.library_paths("linux", ["libfoo_native/lib/libfoo.so.1", "libfoo_native/lib/x.a"]) == [
        "libfoo_native/lib/libfoo.so.1"
    ]


def third_party_plugin(site: Path, body: str) -> Path:
    """A distribution installed in SITE whose `sharewheel.plugins` entry point is `libfoo_sharewheel:PLUGIN`."""
    site.mkdir(parents=True)
    (site / "libfoo_sharewheel.py").write_text(body)
    dist_info = site / "libfoo_sharewheel-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: libfoo-sharewheel\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[sharewheel.plugins]\nlibfoo = libfoo_sharewheel:PLUGIN\n")
    return site


def test_third_party_plugin_from_an_entry_point(blas_consumer: Path, pypi_wheel, tmp_path: Path) -> None:
    """The README's shape, describing the real scipy-openblas64 with the exact policy: it takes
    precedence over the shipped plugin, so the Requires-Dist pins the exact release."""
    body = readme_plugin().replace('"libfoo"', '"openblas-exact"').replace('["libfoo-native"]', '["scipy-openblas64"]')
    body = re.sub(r'"libraries": .*\n', '"libraries": {"linux": ["scipy_openblas64/lib/libscipy_openblas64_.so"]},\n', body)
    body = body.replace('"major"', '"exact"')
    site = third_party_plugin(tmp_path / "site", body)
    output = repair(blas_consumer, tmp_path / "out", "--provider", pypi_wheel(OPENBLAS), env={"PYTHONPATH": str(site)})
    assert [str(r) for r in requires_dist(output)] == ["scipy-openblas64==0.3.31.188.0"]


def test_third_party_plugin_that_fails_to_load(blas_consumer: Path, pypi_wheel, tmp_path: Path) -> None:
    site = third_party_plugin(tmp_path / "site", "raise RuntimeError('broken on purpose')\n")
    line = refused(blas_consumer, tmp_path / "out", "--provider", pypi_wheel(OPENBLAS), env={"PYTHONPATH": str(site)})
    assert "plugin entry point libfoo = libfoo_sharewheel:PLUGIN: cannot load it (RuntimeError: broken on purpose)" in line


def test_shipped_plugins_are_in_the_wheel_and_valid(tmp_path: Path) -> None:
    """plugins/ sits at the top of the repository; the build puts it in the package."""
    import sys
    import zipfile

    from conftest import run

    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path, ROOT])
    with zipfile.ZipFile(one(list(tmp_path.glob("sharewheel-*.whl")))) as zf:
        shipped = sorted(n for n in zf.namelist() if n.startswith("sharewheel/plugins/"))
    assert shipped == [f"sharewheel/plugins/{p.name}" for p in sorted((ROOT / "plugins").glob("*.toml"))]
    names = {Plugin.from_file(p).name for p in (ROOT / "plugins").glob("*.toml")}
    assert names == {"scipy-openblas", "nvidia-cu12", "robotpy-native"}
