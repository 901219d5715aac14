"""Atomic stage outputs: a failure leaves the previous output untouched."""

import pytest

from pipelines.core.io import atomic_dir, read_json, sha256_dir, write_manifest


def test_atomic_dir_replaces_on_success(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as staging:
        (staging / "a.txt").write_text("one")
    with atomic_dir(target) as staging:
        (staging / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_keeps_previous_output_on_failure(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as staging:
        (staging / "a.txt").write_text("one")
    before = sha256_dir(target)
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as staging:
            (staging / "a.txt").write_text("half-written")
            raise RuntimeError("crash")
    assert sha256_dir(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_manifest_lists_file_hashes(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"abc")
    write_manifest(tmp_path, stage="t")
    manifest = read_json(tmp_path / "manifest.json")
    assert manifest["files"] == {"x.bin": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
