"""The installer: the first settings file (Python half) and setup.sh's refusals."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from roost.bootstrap.install import InstallError, main, new_settings, write_settings
from roost.runner.lock import LOCK_NAME, RunLock
from roost.settings import SettingsError, load_settings

SETUP = Path(__file__).resolve().parents[2] / "setup.sh"


def test_names_come_from_the_machine_when_not_given() -> None:
    values, password = new_settings({}, {}, "mx1.example.org")
    assert values["DOMAIN"] == "example.org"
    assert values["HOSTNAMES"] == "mx1.example.org"
    assert values["INITIAL_ADMIN_ACCOUNT"] == "admin"
    assert values["INITIAL_ADMIN_DOMAIN"] == "example.org"
    assert values["INITIAL_ADMIN_MODE"] == "ifmissing"
    assert len(values["SECRET_KEY"]) == 32
    assert password and len(password) >= 16
    # The generated password is shown once, never written.
    assert "INITIAL_ADMIN_PW" not in values
    assert list(values)[:3] == ["DOMAIN", "HOSTNAMES", "SECRET_KEY"]


def test_each_of_domain_and_hostnames_completes_the_other() -> None:
    values, _ = new_settings({}, {"DOMAIN": "example.com"}, "box.elsewhere.net")
    assert (values["DOMAIN"], values["HOSTNAMES"]) == ("example.com", "mail.example.com")
    values, _ = new_settings({}, {"DOMAIN": "example.com"}, "smtp.example.com")
    assert values["HOSTNAMES"] == "smtp.example.com"
    values, _ = new_settings({}, {"HOSTNAMES": "imap.example.net,mx.example.net"}, "localhost")
    assert values["DOMAIN"] == "example.net"


def test_a_machine_without_a_domain_name_needs_domain_given() -> None:
    with pytest.raises(InstallError, match=r"DOMAIN=example\.com"):
        new_settings({}, {}, "localhost")


def test_given_values_win_and_only_settings_are_taken_from_the_environment() -> None:
    given = {
        "DOMAIN": "example.com",
        "SECRET_KEY": "changeMe",
        "INITIAL_ADMIN_PW": "mine-1234",
        "INITIAL_ADMIN_ACCOUNT": "boss",
        "INITIAL_ADMIN_DOMAIN": "example.com",
    }
    environ = {"HOSTNAMES": "mail.example.com", "HOME": "/root", "INITIAL_ADMIN_PW": "env-pw"}
    values, password = new_settings(given, environ, "localhost")
    assert values["SECRET_KEY"] != "changeMe"
    assert values["HOSTNAMES"] == "mail.example.com"
    assert "HOME" not in values
    assert values["INITIAL_ADMIN_ACCOUNT"] == "boss"
    assert values["INITIAL_ADMIN_PW"] == "mine-1234"  # the user's own file keeps it
    assert password is None


def test_a_password_from_the_environment_is_not_written_nor_generated() -> None:
    values, password = new_settings({}, {"INITIAL_ADMIN_PW": "env-pw-1"}, "mail.example.org")
    assert password is None
    assert "INITIAL_ADMIN_PW" not in values


def test_the_file_is_private_and_loads(tmp_path: Path) -> None:
    values, _ = new_settings({}, {"ROOT": str(tmp_path / "root")}, "mail.example.org")
    output = tmp_path / "etc" / "mailu.env"
    settings = write_settings(output, values)
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert settings.DOMAIN == "example.org"
    assert load_settings(env_file=output, environ={}) == settings


def test_a_file_that_would_not_load_is_not_written(tmp_path: Path) -> None:
    values, _ = new_settings({"TLS_FLAVOR": "sometimes"}, {}, "mail.example.org")
    output = tmp_path / "mailu.env"
    with pytest.raises(SettingsError, match="TLS_FLAVOR"):
        write_settings(output, values)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_settings_file_is_never_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "mailu.env"
    output.write_text("DOMAIN=example.org\n")
    assert main(["new-settings", "--output", str(output)]) == 2
    assert "exists" in capsys.readouterr().err
    assert output.read_text() == "DOMAIN=example.org\n"


def test_new_settings_prints_only_the_generated_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOMAIN", "example.org")
    monkeypatch.setenv("ROOT", str(tmp_path / "root"))
    given = tmp_path / "given.env"
    given.write_text("PORTS=25,80,443,465,587,993,995,4190\n")
    output = tmp_path / "mailu.env"
    assert main(["new-settings", "--output", str(output), "--from", str(given)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed and "\n" not in printed
    text = output.read_text()
    assert printed not in text
    assert "PORTS=25,80,443,465,587,993,995,4190" in text
    assert f"ROOT={tmp_path / 'root'}" in text


def test_uninstall_waits_for_roost_to_stop_and_keeps_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values, _ = new_settings({}, {"ROOT": str(tmp_path / "root")}, "mail.example.org")
    output = tmp_path / "mailu.env"
    write_settings(output, values)
    lock = RunLock(tmp_path / "root" / "run" / LOCK_NAME)
    lock.acquire()
    try:
        assert main(["uninstall", "--env", str(output)]) == 2
        assert "Roost is running for" in capsys.readouterr().err
    finally:
        lock.release()
    # Stopped: the host's Postfix never listed this ROOT, so nothing changes there.
    assert main(["uninstall", "--env", str(output)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "root")
    assert (tmp_path / "root" / "run").is_dir()


# -- setup.sh refuses early, before installing anything --------------------------------------


def run_setup(
    *args: str,
    user: str | None = None,
    os_release: str | None = None,
    tmp_path: Path | None = None,
    script: Path = SETUP,
) -> subprocess.CompletedProcess[str]:
    command = ["bash", str(script), *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *command]
    if os_release is not None:
        assert tmp_path is not None
        fake = tmp_path / "os-release"
        fake.write_text(os_release)
        script = f"mount --bind {fake} /etc/os-release && exec {' '.join(command)}"
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_setup_refuses_to_run_as_another_user() -> None:
    if os.geteuid() != 0:
        result = run_setup()
    else:
        # A copy other users can read, wherever the checkout lives.
        with tempfile.TemporaryDirectory() as directory:
            Path(directory).chmod(0o755)
            copy = Path(directory) / "setup.sh"
            shutil.copy(SETUP, copy)
            copy.chmod(0o755)
            result = run_setup(user="nobody", script=copy)
    assert result.returncode == 1, result.stderr
    assert "setup.sh: error: run me as root: sudo ./setup.sh" in result.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root to give setup.sh another /etc/os-release",
)
def test_setup_refuses_a_system_that_is_not_debian(tmp_path: Path) -> None:
    result = run_setup(os_release='ID=fedora\nPRETTY_NAME="Fedora Linux 40"\n', tmp_path=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "this system is Fedora Linux 40" in result.stderr
    assert "installing Debian packages" not in result.stdout


def test_setup_explains_its_options() -> None:
    result = run_setup("--help")
    assert result.returncode == 0
    assert "--no-start" in result.stdout and "--systemd" in result.stdout
    assert "--uninstall" in result.stdout
    result = run_setup("--frobnicate")
    assert result.returncode == 1
    assert "unknown argument: --frobnicate" in result.stderr
