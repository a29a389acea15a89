"""Writing a bundle: atomic, idempotent, stale files removed, nothing outside OUTDIR touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from dexkit.artefacts import RECORD, write_bundle


def test_write_then_rewrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = write_bundle({"a.yaml": "a\n", "sub/b.sh": "#!/bin/sh\n"}, out)
    assert [(w.path.name, w.action) for w in first] == [("a.yaml", "created"),
                                                        ("b.sh", "created")]
    assert out.stat().st_mode & 0o777 == 0o700
    assert (out / "sub/b.sh").stat().st_mode & 0o777 == 0o755
    assert (out / "a.yaml").stat().st_mode & 0o777 == 0o644
    second = write_bundle({"a.yaml": "a2\n", "sub/b.sh": "#!/bin/sh\n"}, out)
    assert [w.action for w in second] == ["updated", "unchanged"]


def test_only_recorded_files_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_bundle({"keep.yaml": "k\n", "gone.yaml": "g\n"}, out)
    (out / "mine.txt").write_text("not dexkit's\n")
    results = write_bundle({"keep.yaml": "k\n"}, out)
    assert [(w.path.name, w.action) for w in results] == [("keep.yaml", "unchanged"),
                                                          ("gone.yaml", "removed")]
    assert (out / "mine.txt").exists()
    assert (out / RECORD).read_text() == "keep.yaml\n"


def test_a_tampered_record_never_deletes_outside(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_bundle({"a.yaml": "a\n"}, out)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / RECORD).write_text("../victim.txt\n/etc/passwd\n")
    write_bundle({"a.yaml": "a\n"}, out)
    assert victim.read_text() == "precious\n"


def test_an_existing_out_directory_keeps_its_mode(tmp_path: Path) -> None:
    out = tmp_path / "shared"
    out.mkdir(mode=0o755)
    out.chmod(0o755)
    write_bundle({"a.yaml": "a\n"}, out)
    assert out.stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("bad", ["../x.yaml", "/abs.yaml", ""])
def test_paths_must_stay_inside(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="inside the output directory"):
        write_bundle({bad: "x"}, tmp_path / "out")
    assert not (tmp_path / "out").exists()
