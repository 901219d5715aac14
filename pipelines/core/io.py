"""Atomic stage outputs, manifests and content hashes.

Every stage writes into a temporary sibling directory and renames it into place only when all
its files are complete, so a crash never leaves a half-written output behind. The manifest is
the last file written.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


class NonRetryableError(RuntimeError):
    """A failure that a retry cannot fix: bad data, a failed gate, a bad configuration."""


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_dir(path: Path) -> str:
    """One digest over every file's relative path and content, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def file_hashes(directory: Path, known: Mapping[str, str] | None = None) -> dict[str, str]:
    """sha256 of every file under ``directory`` except the manifest itself.

    ``known`` gives digests already computed for some relative paths (files linked from a store
    that hashed them when writing), which are not read again.
    """
    known = known or {}
    hashes = {}
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file() and path.name != "manifest.json":
            name = path.relative_to(directory).as_posix()
            hashes[name] = known[name] if name in known else sha256_file(path)
    return hashes


def write_text(path: Path, text: str) -> None:
    """Writes a text file atomically (temp file in the same directory, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    """Writes rows as a CSV file with a header, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_json(path: Path, payload: Any) -> None:
    """Writes JSON atomically (temp file in the same directory, then rename)."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    with open(path) as handle:
        return json.load(handle)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yields a fresh temporary directory that replaces ``target`` only on success.

    On an exception the temporary directory is removed and ``target`` is left as it was.
    """
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = target.with_name(f".{target.name}.old")
    shutil.rmtree(backup, ignore_errors=True)
    if target.exists():
        os.replace(target, backup)
    os.replace(staging, target)
    shutil.rmtree(backup, ignore_errors=True)


def write_manifest(directory: Path, known_hashes: Mapping[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    """Writes ``manifest.json`` (the fields plus the hash of every file) last."""
    manifest = {**fields, "files": file_hashes(directory, known_hashes)}
    write_json(Path(directory) / "manifest.json", manifest)
    return manifest
