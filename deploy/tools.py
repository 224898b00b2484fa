"""Command-line tools the deployment checks need (promtool, helm, kubeconform): found, or installed once.

Order: on ``PATH``; in ``~/.cache/muster/bin`` or ``$(go env GOPATH)/bin``; installed with Debian's apt when
running as root and a package is named (``prometheus`` ships ``promtool``); built with ``go install
module@version`` into ``~/.cache/muster/bin`` when Go is present. ``.ci/run`` installs the same ahead of
``make test`` so the tests never wait for a build there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["BIN", "find_tool"]

BIN = Path.home() / ".cache" / "muster" / "bin"


def _gopath_bin() -> Path | None:
    go = shutil.which("go")
    if go is None:
        return None
    out = subprocess.run([go, "env", "GOPATH"], capture_output=True, text=True, check=False)
    return Path(out.stdout.strip()) / "bin" if out.returncode == 0 and out.stdout.strip() else None


def _located(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in (BIN, _gopath_bin()):
        if folder is not None and (folder / name).is_file():
            return str(folder / name)
    return None


def find_tool(name: str, *, apt_package: str | None = None, go_module: str | None = None,
              timeout: float = 900.0) -> str | None:
    """The path of ``name``, installing it if needed (see the module docstring); None when it cannot be had.

    Args:
        name: the executable, e.g. ``promtool``.
        apt_package: the Debian package that ships it (used only as root).
        go_module: ``module/path/cmd/x@version`` for ``go install``.
        timeout: seconds an install may take.

    """
    found = _located(name)
    if found or os.environ.get("MUSTER_NO_TOOL_INSTALL"):
        return found
    if apt_package and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", apt_package],
                       capture_output=True, env=env, timeout=timeout, check=False)
        if found := _located(name):
            return found
    go = shutil.which("go")
    if go_module and go:
        BIN.mkdir(parents=True, exist_ok=True)
        subprocess.run([go, "install", go_module], capture_output=True, env={**os.environ, "GOBIN": str(BIN)},
                       timeout=timeout, check=False)
    return _located(name)
