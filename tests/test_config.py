"""Loading conf/hotwire.toml: typed values, strict keys, secret references."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import ConfigError, SecretError, load_config
from daemon._units import parse_duration, parse_size


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hotwire.toml"
    path.write_text(text)
    return path


MINIMAL = '[paths]\nservices = "services"\nstate = "state"\n'


class TestLoading:
    def test_shipped_default_config_loads(self) -> None:
        """conf/hotwire.toml, as shipped, is valid."""
        config = load_config(Path(__file__).parent.parent / "conf" / "hotwire.toml")
        assert config.server.host == "127.0.0.1"
        assert config.server.port == 11223

    def test_relative_paths_resolve_against_the_file(self, tmp_path: Path) -> None:
        """Relative paths are relative to the config file, not the working directory."""
        config = load_config(write(tmp_path, MINIMAL))
        assert config.paths.services == tmp_path / "services"
        assert config.deploy.step == 0.01

    def test_units(self, tmp_path: Path) -> None:
        """Durations take units; sizes take binary and decimal units."""
        config = load_config(write(tmp_path, MINIMAL + '[deploy]\nstep = "25ms"\n'))
        assert config.deploy.step == pytest.approx(0.025)
        assert parse_duration("5m") == 300
        assert parse_size("2GiB") == 2 * 1024**3
        assert parse_size("10MB") == 10_000_000

    def test_config_path_from_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without an explicit path, $HOTWIRE_CONFIG names the file."""
        monkeypatch.setenv("HOTWIRE_CONFIG", str(write(tmp_path, MINIMAL)))
        assert load_config().source == tmp_path / "hotwire.toml"


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (MINIMAL + "[server]\nprot = 1\n", r"server\.prot: unknown key; expected one of"),
            (MINIMAL + '[server]\nport = "http"\n', r"server\.port: expected a port number"),
            (MINIMAL + "[server]\nport = 70000\n", r"server\.port: expected a port number"),
            ('[paths]\nservices = "s"\n', r"paths\.state: required key is missing"),
            (MINIMAL + '[deploy]\nstep = "soon"\n', r"deploy\.step: expected a duration"),
            (
                MINIMAL + "[deploy]\nforce_polling = 1\n",
                r"deploy\.force_polling: expected true or false",
            ),
            (MINIMAL + '[log]\nlevel = "loud"\n', r"log\.level: expected one of 'debug'"),
            (MINIMAL + "[unknown]\n", r"unknown: unknown key; expected one of admin, channels"),
            ("[paths\n", r"invalid TOML"),
            (
                MINIMAL + '[[channels.rest]]\npath = "/a/{x}/{x}"\nservice = "s"\n',
                r"channels\.rest\[0\]: path: parameter 'x' appears twice in '/a/\{x\}/\{x\}'",
            ),
        ],
    )
    def test_error_names_file_key_and_expectation(
        self, tmp_path: Path, text: str, expected: str
    ) -> None:
        """Each mistake is an error naming the file, the key path and what was expected."""
        path = write(tmp_path, text)
        with pytest.raises(ConfigError, match=expected) as info:
            load_config(path)
        assert str(path) in str(info.value)

    @pytest.mark.parametrize(
        ("table", "required", "kind"),
        [("cloud.dropbox", 'user_agent = "ua"\n', "dropbox"), ("outgoing.ftp", "", "ftp")],
        ids=["dropbox", "ftp"],
    )
    def test_emulated_connection_needs_its_emulator_enabled(
        self, tmp_path: Path, table: str, required: str, kind: str
    ) -> None:
        """emulator = true without [emulators.KIND] enabled is refused at load, not at run."""
        text = f'{MINIMAL}[{table}."Box"]\n{required}emulator = true\n'
        path = write(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(info.value) == (
            f"{path}: {table}.'Box': emulator = true, but [emulators.{kind}] is not enabled"
        )
        enabled = load_config(write(tmp_path, f"{text}[emulators.{kind}]\nenabled = true\n"))
        assert getattr(enabled.emulators, kind).enabled

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="configuration file not found"):
            load_config(tmp_path / "absent.toml")


class TestSecrets:
    def test_env_reference(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """env:NAME reads the variable; the Secret never shows its value."""
        monkeypatch.setenv("TEST_ADMIN_TOKEN", "s3cr3t-value")
        config = load_config(write(tmp_path, MINIMAL + '[admin]\ntoken = "env:TEST_ADMIN_TOKEN"\n'))
        assert config.admin.token is not None
        assert config.admin.token.reveal() == "s3cr3t-value"
        assert "s3cr3t-value" not in repr(config)
        assert "s3cr3t-value" not in str(config.admin.token)

    def test_unset_env_reference_is_absent(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("TEST_ADMIN_TOKEN", raising=False)
        config = load_config(write(tmp_path, MINIMAL + '[admin]\ntoken = "env:TEST_ADMIN_TOKEN"\n'))
        assert config.admin.token is None

    def test_file_reference_relative_to_config(self, tmp_path: Path) -> None:
        (tmp_path / "token.txt").write_text("from-a-file\n")
        config = load_config(write(tmp_path, MINIMAL + '[admin]\ntoken = "file:token.txt"\n'))
        assert config.admin.token is not None and config.admin.token.reveal() == "from-a-file"

    def test_cred_reference(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """cred:NAME reads $CREDENTIALS_DIRECTORY/NAME, as systemd's LoadCredential= provides."""
        credentials = tmp_path / "creds"
        credentials.mkdir()
        (credentials / "admin").write_text("from-systemd")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
        config = load_config(write(tmp_path, MINIMAL + '[admin]\ntoken = "cred:admin"\n'))
        assert config.admin.token is not None and config.admin.token.reveal() == "from-systemd"

    def test_missing_credential_is_an_error_without_value(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
        with pytest.raises(
            SecretError, match=r"admin\.token: 'cred:admin' needs \$CREDENTIALS_DIRECTORY"
        ):
            load_config(write(tmp_path, MINIMAL + '[admin]\ntoken = "cred:admin"\n'))
        with pytest.raises(SecretError, match=r"admin\.token: cannot read 'file:nope'"):
            load_config(write(tmp_path, MINIMAL + '[admin]\ntoken = "file:nope"\n'))
