"""The runtime contract: provider and consumer in different sys.path entries, upgrades within a
series, two series in one process, and a clear ImportError when the provider is missing."""

from __future__ import annotations

import os
import venv
import zipfile
from pathlib import Path

from conftest import (
    BuildEnv,
    Consumer,
    RunEnv,
    build_consumer,
    consumer_project,
    pip_target,
    repair,
    run,
)
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

CALL = """
import acme_consumer
print(acme_consumer.add(20, 22), acme_consumer.series(), acme_consumer.version())
"""


def test_split_install_in_either_order_and_in_one_venv(consumer: Consumer, build_env: BuildEnv,
                                                       run_env: RunEnv, tmp_path: Path) -> None:
    site_a = pip_target(build_env, consumer.provider, tmp_path / "A")
    site_b = pip_target(build_env, consumer.output, tmp_path / "B")
    assert not (site_b / "acme_native").exists()
    for path in ([site_b, site_a], [site_a, site_b]):
        assert run_env.run(CALL, path).stdout.split() == ["42", "3", "3.1.4"]

    # an ordinary venv, where pip resolves the Requires-Dist from a local index
    root = tmp_path / "venv"
    venv.create(root, with_pip=True)
    run([root / "bin" / "python", "-m", "pip", "install", "-q", "--no-index", "--find-links",
         consumer.provider.parent, consumer.output])
    assert (root / "lib").glob("python*/site-packages/acme_native")
    result = run([root / "bin" / "python", "-c", CALL], env={"LD_LIBRARY_PATH": ""}, cwd=tmp_path)
    assert result.stdout.split() == ["42", "3", "3.1.4"]


def test_upgrade_within_series_and_two_series_in_one_process(
    consumer: Consumer, packed, build_env: BuildEnv, run_env: RunEnv, tmp_path: Path
) -> None:
    site_b3 = pip_target(build_env, consumer.output, tmp_path / "B3")
    # 3.2.0 replaces 3.1.4 under the consumer built against 3.1.4: same series, same name
    site_a32 = pip_target(build_env, packed("3.2.0"), tmp_path / "A32")
    assert run_env.run(CALL, [site_b3, site_a32]).stdout.split() == ["42", "3", "3.2.0"]

    # a consumer of series 4, built and repaired against acme-native 4.0.0
    project = consumer_project(tmp_path / "src", "acme_consumer4")
    wheel4 = build_consumer(build_env, project, tmp_path / "c4", provider=packed("4.0.0"))
    repaired4 = repair(wheel4, tmp_path / "c4" / "wheelhouse", "--provider", packed("4.0.0"))
    site_b4 = pip_target(build_env, repaired4, tmp_path / "B4")
    site_a3 = pip_target(build_env, packed("3.1.4"), tmp_path / "A3")
    site_a4 = pip_target(build_env, packed("4.0.0"), tmp_path / "A4")
    both = """
    import acme_consumer, acme_consumer4
    print(acme_consumer.series(), acme_consumer.version(), acme_consumer4.series(), acme_consumer4.version())
    """
    for path in ([site_b3, site_b4, site_a3, site_a4], [site_a4, site_b4, site_a3, site_b3]):
        assert run_env.run(both, path).stdout.split() == ["3", "3.1.4", "4", "4.0.0"]


def test_missing_provider_is_an_import_error_with_the_fix(consumer: Consumer, packed, build_env: BuildEnv,
                                                          run_env: RunEnv, tmp_path: Path) -> None:
    site_b = pip_target(build_env, consumer.output, tmp_path / "B")
    result = run_env.run(CALL, [site_b], check=False)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: acme-consumer needs the native library provider acme-native")
    assert "pip install 'acme-native" in last
    specifier = last.split("pip install '", 1)[1].rstrip("'")
    assert Requirement(specifier).specifier == SpecifierSet(">=3.1.4,==3.*")

    # only another series installed: said so, not a loader error
    site_a4 = pip_target(build_env, packed("4.0.0"), tmp_path / "A4")
    result = run_env.run(CALL, [site_b, site_a4], check=False)
    assert "ships another ABI series" in result.stderr.strip().splitlines()[-1]


def test_extension_outside_any_package_gets_a_shim(packed, build_env: BuildEnv, run_env: RunEnv,
                                                   tmp_path: Path) -> None:
    provider = packed("3.1.4")
    project = consumer_project(tmp_path / "src", "acme_top", top_level=True)
    wheel = build_consumer(build_env, project, tmp_path, provider=provider)
    output = repair(wheel, tmp_path / "wheelhouse", "--provider", provider)
    with zipfile.ZipFile(output) as zf:
        names = zf.namelist()
    assert "acme_top.py" in names and "_sharewheel_providers_acme_top.py" in names
    assert [n for n in names if n.startswith("acme_top.sharewheel.") and n.endswith(".so")]
    site_a = pip_target(build_env, provider, tmp_path / "A")
    site_b = pip_target(build_env, output, tmp_path / "B")
    code = "import acme_top; print(acme_top.add(1, 2), type(acme_top).__name__, acme_top.__spec__.origin.endswith('.so'))"
    assert run_env.run(code, [site_b, site_a]).stdout.split() == ["3", "module", "True"]
    missing = run_env.run(code, [site_b], check=False)
    assert "acme-top needs the native library provider acme-native" in missing.stderr
    # repairing the repaired wheel keeps one shim and one renamed extension
    again = repair(output, tmp_path / "again", "--provider", provider)
    with zipfile.ZipFile(again) as zf:
        assert sorted(zf.namelist()) == sorted(names)


def test_existing_requirement_is_narrowed_not_duplicated(packed, build_env: BuildEnv, tmp_path: Path) -> None:
    provider = packed("3.1.4")
    project = consumer_project(tmp_path / "src", "acme_pinned", dependencies=("acme-native>=3",))
    wheel = build_consumer(build_env, project, tmp_path, provider=provider)
    output = repair(wheel, tmp_path / "wheelhouse", "--provider", provider)
    with zipfile.ZipFile(output) as zf:
        metadata = zf.read("acme_pinned-1.0.0.dist-info/METADATA").decode()
    requirements = [Requirement(l.split(":", 1)[1]) for l in metadata.splitlines() if l.startswith("Requires-Dist:")]
    assert [r.name for r in requirements] == ["acme-native"]
    assert requirements[0].specifier == SpecifierSet(">=3,>=3.1.4,==3.*")
    assert os.path.basename(output).startswith("acme_pinned-1.0.0-cp")
