"""Patching a manifest on disk: backups beside the manifests directory, never inside it."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from dexkit.staticpod import backup_dir_for, patch_manifest
from tests.unit.render.helpers import FIXTURES, make_config

NOW = dt.datetime(2026, 11, 29, 12, 0, 0, tzinfo=dt.UTC)


def _manifest(tmp_path: Path) -> Path:
    path = tmp_path / "etc/kubernetes/manifests/kube-apiserver.yaml"
    path.parent.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "kube-apiserver-1.34.yaml", path)
    path.chmod(0o600)
    return path


def test_backups_never_land_in_the_kubelets_directory(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    outcome = patch_manifest(manifest, make_config(), now=NOW)
    assert outcome.written and outcome.backup is not None
    assert outcome.backup.parent == backup_dir_for(manifest) == \
        (tmp_path / "etc/kubernetes/dexkit-backups").resolve()
    assert outcome.backup.name == "kube-apiserver.yaml.bak-20261129T120000Z"
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["kube-apiserver.yaml"]


def test_two_backups_in_one_second_do_not_clash(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    first = patch_manifest(manifest, make_config(), now=NOW)
    second = patch_manifest(manifest, make_config({"apiServer": {
        "mode": "authentication-config"}}), now=NOW)
    assert first.backup is not None and second.backup is not None
    assert first.backup != second.backup
    assert second.backup.read_text() != first.backup.read_text()


def test_dry_run_and_already_configured_write_nothing(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    dry = patch_manifest(manifest, make_config(), dry_run=True, now=NOW)
    assert dry.result.changed and not dry.written and dry.backup is None
    assert manifest.read_text() == (FIXTURES / "kube-apiserver-1.34.yaml").read_text()
    patch_manifest(manifest, make_config(), now=NOW)
    again = patch_manifest(manifest, make_config(), now=NOW)
    assert not again.result.changed and not again.written and again.backup is None
