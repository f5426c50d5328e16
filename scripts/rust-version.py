#!/usr/bin/env python3
"""Is the workspace's rust-version true? Print what contradicts it and exit 1.

    python3 scripts/rust-version.py
    python3 scripts/rust-version.py --metadata FILE --dockerfile FILE   # other inputs (the test's)

Cargo.toml's `rust-version` says which toolchain the workspace needs. It is wrong when
- a package in the dependency graph (`cargo metadata --format-version 1`: every package the
  lock file resolves, dev-dependencies and all platforms included) declares a newer one: the
  workspace cannot build with its own;
- a workspace member does not declare the workspace's (`rust-version.workspace = true`);
- the container image builds with another Rust (`ARG RUST_IMAGE=rust:X.Y-...` in
  deploy/Dockerfile), so the image tests a toolchain the workspace does not name.
.ci/run runs this before the build; tests/tests/workflows.rs checks that it catches each case.
A new dependency that needs a newer Rust means raising rust-version (and the image) on purpose.
Python 3 standard library only.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def version(text):
    """(major, minor, patch) of `1.95` or `1.95.0`; None for anything else."""
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return (int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


def shown(v):
    return ".".join(map(str, v[:2] if v[2] == 0 else v))


def declared():
    """[workspace.package] rust-version of the root Cargo.toml."""
    text = (ROOT / "Cargo.toml").read_text()
    section = re.search(r"^\[workspace\.package\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    value = section and re.search(r'^rust-version\s*=\s*"([^"]*)"', section[1], re.M)
    return value[1] if value else None


def metadata(path):
    if path:
        return json.loads(Path(path).read_text())
    cargo = os.environ.get("CARGO", "cargo")
    out = subprocess.run(
        [cargo, "metadata", "--format-version", "1", "--locked"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"cargo metadata failed:\n{out.stderr}")
    return json.loads(out.stdout)


def main(argv):
    def option(name, default=None):
        return argv[argv.index(name) + 1] if name in argv else default

    problems = []
    text = declared()
    workspace = version(text)
    if workspace is None:
        sys.exit(f"Cargo.toml: [workspace.package] rust-version is {text!r}, not a version X.Y[.Z]")

    meta = metadata(option("--metadata"))
    members = set(meta["workspace_members"])
    for package in sorted(meta["packages"], key=lambda p: (p["name"], p["version"])):
        needs = version(package.get("rust_version"))
        name = f"{package['name']} {package['version']}"
        if package["id"] in members:
            if needs != workspace:
                problems.append(
                    f"workspace member {name} declares rust-version "
                    f"{package.get('rust_version')!r}, not the workspace's {text} "
                    "(rust-version.workspace = true in its Cargo.toml)"
                )
        elif needs and needs > workspace:
            problems.append(
                f"dependency {name} needs Rust {package['rust_version']}, newer than the "
                f"workspace's rust-version {text} (Cargo.toml)"
            )

    dockerfile = Path(option("--dockerfile", ROOT / "deploy/Dockerfile"))
    image = re.search(r"^ARG\s+RUST_IMAGE=rust:([0-9.]+)\b", dockerfile.read_text(), re.M)
    if not image:
        problems.append(f"{dockerfile}: no ARG RUST_IMAGE=rust:X.Y-... line")
    elif version(image[1]) != workspace:
        problems.append(
            f"{dockerfile}: ARG RUST_IMAGE builds with Rust {image[1]}, the workspace's "
            f"rust-version is {text} (Cargo.toml)"
        )

    for problem in problems:
        print(problem)
    if problems:
        print(f"rust-version {text} is not true: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(
        f"rust-version {text}: no dependency of the {len(meta['packages'])} packages needs a "
        f"newer Rust; every member and {dockerfile.name}'s build image say {shown(workspace)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
