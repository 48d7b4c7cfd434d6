from pathlib import Path

import pytest

from lakehouse.core.config import Config
from lakehouse.core.errors import ConfigError


def test_defaults_resolve_to_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config.load(env={})
    assert config.root == str(tmp_path / "lakehouse_data")
    assert config.is_local
    assert config.dagster_home_path == tmp_path / "lakehouse_data" / ".dagster"


def test_precedence_file_then_env_then_argument(tmp_path):
    toml = tmp_path / "lakehouse.toml"
    toml.write_text('root = "from-file"\n[ingest]\nworkers = 3\n[sql]\ntimeout_s = 5.0\n')
    from_file = Config.load(config_file=toml, env={})
    assert from_file.root.endswith("from-file")
    assert from_file.ingest.workers == 3 and from_file.sql.timeout_s == 5.0
    from_env = Config.load(config_file=toml, env={"LAKEHOUSE_ROOT": str(tmp_path / "env")})
    assert from_env.root == str(tmp_path / "env")
    assert from_env.ingest.workers == 3
    from_arg = Config.load(root=tmp_path / "arg", config_file=toml, env={"LAKEHOUSE_ROOT": "x"})
    assert from_arg.root == str(tmp_path / "arg")


def test_config_file_from_environment(tmp_path):
    toml = tmp_path / "custom.toml"
    toml.write_text("[keyframes]\nmax_per_clip = 3\n")
    config = Config.load(env={"LAKEHOUSE_CONFIG": str(toml)}, root=tmp_path)
    assert config.keyframes.max_per_clip == 3


def test_object_store_root_is_kept_verbatim():
    config = Config.load(root="s3://bucket/corpus/", env={})
    assert config.root == "s3://bucket/corpus"
    assert not config.is_local
    assert "dagster-" in config.dagster_home_path.name


@pytest.mark.parametrize(
    "text",
    ['rooot = "x"\n', "[ingest]\nworkerz = 1\n", "not toml ["],
)
def test_bad_configuration_is_a_clear_error(tmp_path, text):
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError) as info:
        Config.load(config_file=toml, env={})
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(config_file=Path(tmp_path / "nope.toml"), env={})
