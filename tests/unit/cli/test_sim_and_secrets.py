"""No server: passwords never taken on argv, private files, and finding the vcsim launcher."""

import io
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from virtdriver.cli.commands import read_secret
from virtdriver.common.exceptions import InvalidInput
from virtdriver.vmware.simulator import (
    LauncherUnavailable,
    build_launcher,
    make_private_dir,
    write_private_file,
)
from virtdriver.vmware.simulator.build import SOURCE_DIR, source_hash


def virtdriver(cwd, *args, env=None, stdin=None):
    return subprocess.run([sys.executable, "-m", "virtdriver.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, env=env, input=stdin)


@pytest.mark.parametrize("command", [
    ["spawn", "web1", "--vcpus", "1", "--memory", "64", "--disk", "1", "--image", "x",
     "--admin-password", "hunter2-secret"],
    ["spawn", "web1", "--vcpus", "1", "--memory", "64", "--disk", "1", "--image", "x",
     "--admin-password=hunter2-secret"],
    ["rescue", "web1", "--rescue-password", "hunter2-secret"],
])
def test_a_password_on_the_command_line_is_refused_without_echoing_it(tmp_path, command):
    done = virtdriver(tmp_path, *command)
    assert done.returncode == 2
    assert "hunter2-secret" not in done.stderr + done.stdout
    assert "-password-file PATH" in done.stderr
    assert not (tmp_path / "virtdriver-state").exists()  # refused before anything ran


def test_help_offers_only_the_file_form(tmp_path):
    helptext = virtdriver(tmp_path, "spawn", "--help").stdout
    assert "--admin-password-file PATH" in helptext
    assert "--admin-password " not in helptext.replace("--admin-password-file", "")


def test_read_secret_takes_the_first_line_of_a_file(tmp_path):
    path = tmp_path / "pw"
    path.write_text("s3cret pass\nsecond line\n")
    assert read_secret(str(path)) == "s3cret pass"
    assert read_secret(None) is None


def test_read_secret_from_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("from-stdin\n"))
    assert read_secret("-") == "from-stdin"


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_read_secret_refuses_a_missing_or_empty_file(tmp_path, content):
    path = tmp_path / "pw"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidInput) as caught:
        read_secret(str(path))
    assert caught.value.field == "password file"


def test_a_missing_password_file_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "disk.vmdk").write_bytes(b"\x01" * 4096)
    assert virtdriver(tmp_path, "image", "import", "disk.vmdk", "--name", "x").returncode == 0
    done = virtdriver(tmp_path, "--backend", "xen", "spawn", "web1", "--vcpus", "1",
                      "--memory", "64", "--disk", "1", "--image", "x",
                      "--admin-password-file", str(tmp_path / "absent"))
    assert done.returncode == 2
    assert "password file" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.fixture
def open_umask():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_private_files_are_0600_from_creation_whatever_the_umask(tmp_path, open_umask):
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    existing.write_text("old")
    existing.chmod(0o666)
    for path in (fresh, existing):
        write_private_file(path, "secret")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == "secret"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "fresh"]  # no temp left


def test_private_dir_is_0700_whatever_the_umask(tmp_path, open_umask):
    created, existing = tmp_path / "a" / "b", tmp_path / "existing"
    existing.mkdir(mode=0o777)
    for path in (created, existing):
        make_private_dir(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_source_hash_follows_the_go_sources(tmp_path):
    copy = tmp_path / "launcher"
    shutil.copytree(SOURCE_DIR, copy)
    assert source_hash(copy) == source_hash()
    with open(copy / "main.go", "a") as handle:
        handle.write("\n// changed\n")
    assert source_hash(copy) != source_hash()


def _env_without_go(tmp_path: Path) -> dict:
    # PATH without Go (the interpreter is run by its absolute path), an empty cache.
    return {**os.environ, "PATH": str(tmp_path / "no-bin"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"), "VIRTDRIVER_VCSIM": ""}


def test_without_go_building_names_the_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(LauncherUnavailable) as caught:
        build_launcher(tmp_path / "cache", notify=None)
    message = str(caught.value)
    assert "golang-go golang-github-vmware-govmomi-dev" in message and "--vcsim" in message


def test_sim_start_without_go_or_vcsim_is_one_clear_error(tmp_path):
    done = virtdriver(tmp_path, "sim", "start", env=_env_without_go(tmp_path))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "apt-get install golang-go golang-github-vmware-govmomi-dev" in lines[0]
    assert not (tmp_path / "virtdriver-sims").exists()
    assert not (tmp_path / "virtdriver.conf").exists()


def test_sim_start_with_a_missing_vcsim_is_a_usage_error(tmp_path):
    done = virtdriver(tmp_path, "sim", "start", "--vcsim", str(tmp_path / "nope"))
    assert done.returncode == 2 and "--vcsim" in done.stderr
    assert not (tmp_path / "virtdriver-sims").exists()


def test_launcher_path_is_in_the_xdg_cache(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "virtdriver.vmware.simulator", "path"],
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == str(tmp_path / "virtdriver" / f"vcsim-{source_hash()}")
