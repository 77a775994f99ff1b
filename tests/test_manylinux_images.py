"""manylinux-images/: the Dockerfile that adds sharewheel to the official manylinux and musllinux
images, its smoke test, its CI workflow and its README.

No container engine runs on the project's machines (CI builds the images:
.github/workflows/manylinux-images.yml). Here the Dockerfile is parsed with dockerfile-parse,
its bases are checked to be the official pypa images, and its own RUN commands — the pipx
install and the smoke test — are run on this machine, in a fresh venv. What is substituted is
only what belongs to the image (see `image_env`): pipx from that venv instead of the image's,
temporary PIPX_HOME / PIPX_BIN_DIR instead of the image's system directories, the
AUDITWHEEL_PLAT the base image sets, the checkout instead of its `/src` mount, and the test's
interpreter instead of the image's /opt/python one.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    PIP_QUIET,
    ROOT,
    BuildEnv,
    build_consumer,
    consumer_project,
    manifest_of,
    one,
    requires_dist,
    run,
)
from dockerfile_parse import DockerfileParser
from packaging.specifiers import SpecifierSet

IMAGES_DIR = ROOT / "manylinux-images"
DOCKERFILE = IMAGES_DIR / "Dockerfile"
SMOKE_TEST = IMAGES_DIR / "smoke-test.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "manylinux-images.yml"

# The official pypa images the Dockerfile derives from (https://github.com/pypa/manylinux), each
# with the platform it is built for. Every one of them sets AUDITWHEEL_PLAT to its own name.
OFFICIAL = {
    "manylinux_2_28_x86_64": "linux/amd64",
    "manylinux_2_28_aarch64": "linux/arm64",
    "musllinux_1_2_x86_64": "linux/amd64",
    "musllinux_1_2_aarch64": "linux/arm64",
}
REGISTRY = "quay.io/pypa/"
DATED_TAG = re.compile(r"\d{4}\.\d{2}\.\d{2}-\d+")  # the version-like tags pypa publishes
PINNED_BASE = re.compile(
    r"(?P<repository>[^:@\s]+):(?P<tag>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64}) AS (?P<stage>\S+)"
)
MOUNT_TARGET = "/src"  # where the Dockerfile's RUN --mount=type=bind puts the build context


def sharewheel_version() -> str:
    text = (ROOT / "src" / "sharewheel" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)[1]


def instructions(**build_args: str) -> list[dict]:
    """The Dockerfile's instructions (comments dropped), parsed by dockerfile-parse."""
    parser = DockerfileParser(str(DOCKERFILE), build_args=build_args or None)
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def stages() -> list[list[dict]]:
    """The instructions of each stage, FROM first; global ARGs (before any FROM) are left out."""
    result: list[list[dict]] = []
    for instruction in instructions():
        if instruction["instruction"] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def run_parts(value: str) -> tuple[list[str], str]:
    """A RUN value split into its `--flag=...` options (mounts) and the shell command."""
    flags = []
    rest = value.strip()
    while match := re.match(r"(--[a-z-]+=\S+)\s+", rest):
        flags.append(match[1])
        rest = rest[match.end():]
    return flags, rest


def run_commands() -> dict[str, tuple[list[str], str]]:
    """The image stage's RUN commands: {"install": ..., "smoke-test": ...}."""
    runs = [run_parts(i["value"]) for i in stages()[-1] if i["instruction"] == "RUN"]
    assert len(runs) == 2, runs
    return {"install": runs[0], "smoke-test": runs[1]}


def test_the_dockerfile_needs_buildkit_syntax_1() -> None:
    # RUN --mount needs the Dockerfile 1.2+ frontend; the directive asks for the newest 1.x
    assert DOCKERFILE.read_text().splitlines()[0] == "# syntax=docker/dockerfile:1"


def test_the_bases_are_the_official_images_pinned_by_tag_and_digest() -> None:
    froms = [stage[0]["value"] for stage in stages()]
    *bases, image = froms
    pinned = [PINNED_BASE.fullmatch(value) for value in bases]
    assert all(pinned), bases
    # one stage per official image, named as the image is, and nothing else
    assert {m["stage"] for m in pinned} == set(OFFICIAL) and len(pinned) == len(OFFICIAL)
    for m in pinned:
        assert m["repository"] == REGISTRY + m["stage"], m[0]
        assert DATED_TAG.fullmatch(m["tag"]), m[0]
    # one manylinux release for all four, and four different images
    assert len({m["tag"] for m in pinned}) == 1, bases
    assert len({m["digest"] for m in pinned}) == len(pinned), bases
    # the image stage is the one IMAGE names; its default is an official one
    assert image == "${IMAGE}"
    everything = instructions()
    first_from = next(n for n, i in enumerate(everything) if i["instruction"] == "FROM")
    assert [(i["instruction"], i["value"]) for i in everything[:first_from]] == [
        ("ARG", "IMAGE=manylinux_2_28_x86_64")]


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_each_image_resolves_to_its_official_base(name: str) -> None:
    parser = DockerfileParser(str(DOCKERFILE), build_args={"IMAGE": name})
    # dockerfile-parse substitutes the build arg: the last FROM is the stage of that name...
    assert parser.baseimage == name
    assert parser.parent_images[-1] == name
    # ...whose base is the official image
    stage = next(s for s in stages() if s[0]["value"].endswith(f" AS {name}"))
    assert stage[0]["value"].startswith(f"{REGISTRY}{name}:")
    assert len(stage) == 1, "the base stages only name an image"


def test_the_image_stage_adds_sharewheel_with_pipx_and_nothing_else() -> None:
    image = stages()[-1]
    kinds = [i["instruction"] for i in image]
    # no ENV, USER, COPY, ENTRYPOINT or CMD: cibuildwheel gets the base image plus sharewheel
    assert kinds == ["FROM", "ARG", "ARG", "ARG", "ARG", "RUN", "RUN"], kinds
    args = dict(i["value"].partition("=")[::2] for i in image if i["instruction"] == "ARG")
    assert args == {
        "IMAGE": "",  # the global ARG, redeclared so that RUN sees it
        "SHAREWHEEL": f"sharewheel=={sharewheel_version()}",  # the release of this checkout
        "PIPX_HOME": "/opt/_internal/pipx",  # the images' own pipx layout (their wrapper's)
        "PIPX_BIN_DIR": "/usr/local/bin",  # on the images' PATH
    }
    commands = run_commands()
    flags, install = commands["install"]
    assert flags == [f"--mount=type=bind,target={MOUNT_TARGET},rw"]
    assert 'pipx install --pip-args=--no-cache-dir "${SHAREWHEEL}"' in install
    assert 'test "$(command -v sharewheel)" = "${PIPX_BIN_DIR}/sharewheel"' in install
    assert install.endswith("&& sharewheel --version")
    assert install.startswith('if [ "${AUDITWHEEL_PLAT:-}" != "${IMAGE}" ]; then')
    flags, smoke = commands["smoke-test"]
    assert flags == [f"--mount=type=bind,target={MOUNT_TARGET}"]  # read-only: writes to /tmp only
    assert smoke == f"sh {MOUNT_TARGET}/manylinux-images/smoke-test.sh"
    assert Path(host_path(smoke.split()[1])) == SMOKE_TEST


def test_the_build_context_leaves_out_checkout_leftovers() -> None:
    ignored = {line for line in (IMAGES_DIR / "Dockerfile.dockerignore").read_text().splitlines()
               if line and not line.startswith("#")}
    assert {"**/.git", "**/.venv", "**/build", "**/dist", "**/__pycache__"} <= ignored
    # nothing the build reads: the project, examples/ and the smoke test
    for needed in ("pyproject.toml", "README.md", "src", "plugins", "examples", "manylinux-images"):
        assert needed not in ignored and f"**/{needed}" not in ignored


def test_the_workflow_builds_and_smoke_tests_each_image() -> None:
    # PyYAML is not among the test dependencies: the workflow is checked as text
    text = WORKFLOW.read_text()
    matrix = dict(re.findall(r"^\s*- image: (\S+)\n\s*platform: (\S+)$", text, re.MULTILINE))
    assert matrix == OFFICIAL
    build = re.search(r"^\s*run: >-\n((?:\s{10}.*\n)+)", text, re.MULTILINE)[1].split()
    assert build[:3] == ["docker", "buildx", "build"]
    assert {"--build-arg", 'IMAGE="$IMAGE"', "SHAREWHEEL=/src", "--platform", '"$PLATFORM"',
            "-f", "manylinux-images/Dockerfile", "--load"} <= set(build), build
    assert build[-1] == "."  # the repository root is the build context
    assert "uses: docker/setup-qemu-action@" in text and "platforms: arm64" in text
    assert "sh -c 'command -v sharewheel && sharewheel --version'" in text
    assert f'-v "$PWD:{MOUNT_TARGET}:ro"' in text
    assert f"sh {MOUNT_TARGET}/manylinux-images/smoke-test.sh" in text


def test_the_readme_shows_the_cibuildwheel_options() -> None:
    text = (IMAGES_DIR / "README.md").read_text()
    for name in OFFICIAL:
        policy, arch = re.fullmatch(r"(\w+linux_\d+_\d+)_(\w+?)", name).groups()
        option = f"{policy.split('_')[0]}-{arch}-image"
        image = re.escape(f"ghcr.io/OWNER/sharewheel-{name}:{sharewheel_version()}")
        assert re.search(rf'^{option} = "{image}"$', text, re.MULTILINE), option
        assert f"`{REGISTRY}{name}`" in text
    assert 'repair-wheel-command = "sharewheel repair -w {dest_dir} {wheel}"' in text
    top = (ROOT / "README.md").read_text()
    section = top.split("## manylinux and musllinux images\n", 1)[1].split("\n## ", 1)[0]
    assert "manylinux-images/" in section
    assert top.index("## manylinux and musllinux images") < top.index("## Development")


# --- the Dockerfile's commands, run on this machine -------------------------------------------


@dataclass(frozen=True)
class ImageEnv:
    """Where the install command put sharewheel, and the environment to run image commands in."""

    env: dict[str, str]
    pipx_home: Path
    bin_dir: Path
    install_output: str


def host_path(value: str) -> str:
    """A path under the Dockerfile's /src mount, on this machine: the checkout."""
    return re.sub(rf"(?<![\w/]){re.escape(MOUNT_TARGET)}(?=/|\s|$)", str(ROOT), value)


def image_run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A RUN command (shell form) as the builder runs it: /bin/sh -c, ARGs in the environment."""
    return subprocess.run(["/bin/sh", "-c", host_path(command)], check=False, env=env, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, cwd="/")


@pytest.fixture(scope="module")
def image_env(tmp_path_factory: pytest.TempPathFactory) -> ImageEnv:
    base = tmp_path_factory.mktemp("image")
    # The image's pipx is a wrapper around pipx in a venv of its own (/opt/_internal/tools): here,
    # pipx from PyPI in a fresh venv, and a directory holding only its `pipx` put on PATH.
    tools = base / "tools"
    venv.create(tools, with_pip=True)
    run([tools / "bin" / "python", "-m", "pip", *PIP_QUIET, "install", "pipx"])
    shims = base / "shims"
    shims.mkdir()
    (shims / "pipx").symlink_to(tools / "bin" / "pipx")
    pipx_home, bin_dir = base / "pipx-home", base / "bin"
    # The rest of PATH as it is, less any directory holding another sharewheel (the test venv's),
    # so that the commands can only find the one under test; the pipx shim comes first.
    path = [shims, bin_dir, *(p for p in os.environ["PATH"].split(os.pathsep)
                              if p and not os.path.exists(os.path.join(p, "sharewheel")))]
    name = f"manylinux_2_28_{platform.machine()}"
    if name not in OFFICIAL:
        pytest.fail(f"no image of manylinux-images/ is for this machine's {platform.machine()}",
                    pytrace=False)
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update({
        "PATH": os.pathsep.join(map(str, path)),
        # set by the official base image (its own name)
        "AUDITWHEEL_PLAT": name,
        # the Dockerfile's ARGs, which RUN sees as environment variables
        "IMAGE": name,
        "SHAREWHEEL": host_path(workflow_build_arg("SHAREWHEEL")),  # CI's /src: the checkout
        "PIPX_HOME": str(pipx_home),  # /opt/_internal/pipx and /usr/local/bin are this machine's
        "PIPX_BIN_DIR": str(bin_dir),
        "PIPX_MAN_DIR": str(base / "man"),  # the image's wrapper sets it too
        # the smoke test's interpreter: /opt/python/cp312-cp312/bin/python in the images
        "PYTHON": sys.executable,
    })
    result = image_run(run_commands()["install"][1], env)
    assert result.returncode == 0, f"the install command failed:\n{result.stdout}\n{result.stderr}"
    return ImageEnv(env, pipx_home, bin_dir, result.stdout)


def workflow_build_arg(name: str) -> str:
    """The value CI's build passes for the build ARG `name`."""
    return re.search(rf"--build-arg {name}=(\S+)", WORKFLOW.read_text())[1]


def test_the_install_command_puts_sharewheel_on_path_in_a_venv_of_its_own(
        image_env: ImageEnv) -> None:
    installed = image_env.bin_dir / "sharewheel"
    assert shutil.which("sharewheel", path=image_env.env["PATH"]) == str(installed)
    # the command's last step, `sharewheel --version`, printed this checkout's version
    version = re.escape(sharewheel_version())
    assert re.search(rf"^sharewheel,? (version )?{version}\b", image_env.install_output,
                     re.MULTILINE), image_env.install_output
    # pipx's venv, apart from every other Python environment; an installed copy, not the checkout
    python = image_env.pipx_home / "venvs" / "sharewheel" / "bin" / "python"
    code = "import sys, sharewheel; print(sys.prefix); print(sharewheel.__file__)"
    prefix, module = map(Path, run([python, "-c", code], env={"PYTHONPATH": ""}).stdout.split())
    assert prefix == image_env.pipx_home / "venvs" / "sharewheel"
    assert module.is_relative_to(prefix) and not module.is_relative_to(ROOT)


def test_the_install_command_refuses_a_base_that_is_not_the_image_named(
        image_env: ImageEnv) -> None:
    for plat in (None, "manylinux2014_x86_64"):  # not an official image; another official one
        env = {**image_env.env, "IMAGE": "manylinux_2_28_x86_64"}
        env.pop("AUDITWHEEL_PLAT")
        if plat:
            env["AUDITWHEEL_PLAT"] = plat
        result = image_run(run_commands()["install"][1], env)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            "IMAGE=manylinux_2_28_x86_64 is not one of this Dockerfile's official bases "
            f"(AUDITWHEEL_PLAT={plat or 'unset'})"
        )


def test_the_smoke_test_command_passes_in_a_venv(image_env: ImageEnv, tmp_path: Path) -> None:
    # TMPDIR (unset in the images: /tmp) only to see that the smoke test cleans up after itself
    result = image_run(run_commands()["smoke-test"][1], {**image_env.env, "TMPDIR": str(tmp_path)})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"== sharewheel --version ({image_env.bin_dir / 'sharewheel'})" in output
    packed = r"^acme_native-3\.1\.4-py3-none-manylinux\S+\.whl: "
    repaired = r"^acme_consumer-1\.0\.0-\S+-manylinux\S+\.whl: linked libacme-sw\w+\.so \(already the provider's name"
    assert re.search(packed, output, re.MULTILINE), output
    assert re.search(repaired, output, re.MULTILINE), output
    # called twice: installed in one venv, then in site-a + site-b
    assert output.count("acme_consumer.add(2, 3) = 5, from libacme 3.1.4") == 2, output
    assert "== smoke test passed (glibc)" in output
    # it worked in a temporary directory, and removed it
    work = re.escape(str(tmp_path)) + r"/sharewheel-smoke-test\.\w+"
    assert re.search(rf"loaded from {work}/site-a/acme_native/lib/", output), output
    assert list(tmp_path.iterdir()) == []


def test_the_readme_recipe_pipx_inject_then_repair(image_env: ImageEnv, build_env: BuildEnv,
                                                   packed: Callable[..., Path],
                                                   tmp_path: Path) -> None:
    """The cibuildwheel recipe of manylinux-images/README.md: `before-all` puts the provider into
    sharewheel's venv, and `repair-wheel-command` finds it there with no --provider."""
    text = (IMAGES_DIR / "README.md").read_text()
    before_all = re.search(r'^before-all = "([^"]+)"', text, re.MULTILINE)[1]
    command = re.search(r'^repair-wheel-command = "([^"]+)"', text, re.MULTILINE)[1]
    provider = packed("3.1.4")
    # cibuildwheel runs both with `sh -c`; the provider comes from PyPI there, from a wheel here
    assert before_all == "pipx inject sharewheel acme-native"
    result = image_run(before_all.replace("acme-native", shlex.quote(str(provider))), image_env.env)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        project = consumer_project(tmp_path, "acme_consumer")
        wheel = build_consumer(build_env, project, tmp_path, provider=provider)
        dest = tmp_path / "repaired"
        dest.mkdir()
        # as cibuildwheel runs it: placeholders filled in, `sh -c`, in the project directory
        filled = command.format(dest_dir=shlex.quote(str(dest)), wheel=shlex.quote(str(wheel)))
        result = subprocess.run(["/bin/sh", "-c", filled], check=False, env=image_env.env,
                                cwd=project, text=True, capture_output=True)
        assert result.returncode == 0, result.stdout + result.stderr
        repaired = one(list(dest.iterdir()))
        [link] = manifest_of(repaired)["links"]
        assert (link["provider"], link["version"]) == ("acme-native", "3.1.4")
        [requirement] = requires_dist(repaired)
        assert requirement.name == "acme-native"
        assert requirement.specifier == SpecifierSet(">=3.1.4,==3.*")
    finally:  # leave sharewheel's venv as the install command made it
        image_run("pipx uninject sharewheel acme-native", image_env.env)


def test_pipx_run_takes_the_same_command(image_env: ImageEnv) -> None:
    """`pipx run sharewheel` runs the console script in a throwaway venv; until the package is on
    PyPI, `--spec` names the checkout. It prints the versions of the pypa tools it resolved."""
    result = image_run(f"pipx run --spec {ROOT} sharewheel --version", image_env.env)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith(f"sharewheel {sharewheel_version()} (auditwheel 6.8."), line
    assert "delocate 0.13." in line and "delvewheel 1.13." in line
