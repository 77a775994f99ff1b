"""The extension's compile and link flags come from `pkg-config acme` (PKG_CONFIG_PATH must
reach the provider's pkgconfig dir: `python -c "import acme_native; print(acme_native.get_pkgconfig_dir())"`)."""

import shlex
import shutil
import subprocess

from setuptools import Extension, setup


def pkg_config(*args: str) -> list[str]:
    tool = shutil.which("pkg-config") or shutil.which("pkgconf")
    if tool is None:
        raise SystemExit("acme-consumer needs pkg-config (pip install pkgconf)")
    return shlex.split(subprocess.check_output([tool, *args, "acme"], text=True))


setup(
    ext_modules=[
        Extension(
            "acme_consumer._core",
            ["src/_core.c"],
            extra_compile_args=pkg_config("--cflags"),
            extra_link_args=pkg_config("--libs"),
        )
    ]
)
