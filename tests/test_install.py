"""scripts/install.py, which `make article` and `make test` install with: uv, given pip's own
configuration, and pip where uv cannot be had. (CI's `make test` on a clean checkout runs the
real install; these tests pin what it passes on and what it falls back to.)"""
import subprocess
from pathlib import Path

import pytest

from scripts import install

# `pip config list` on the build machine: a find-links folder with the CPU torch wheel, two local
# indexes and a constraints file in pip.conf, and an environment variable naming find-links again
CONFIG = """global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels'
install.find-links='/srv/install-wheels'
:env:.default-timeout='180'
:env:.find-links='/opt/wheels-from-env'
"""


def test_pips_options_are_read_with_pips_precedence_and_passed_to_uv():
    options = install.pip_options(CONFIG)
    assert options["find-links"] == "/opt/wheels-from-env"  # environment over install over global
    assert options["constraint"] == "/etc/xdg/pip/constraints.txt"
    assert install.pip_options("global.find-links='/a'\ninstall.find-links='/b'")["find-links"] == "/b"
    flags, environment = install.uv_arguments(options)
    assert flags == ["--extra-index-url", "file:///opt/pypi/simple",
                     "--extra-index-url", "file:///opt/pypi-more/simple",
                     "--find-links", "/opt/wheels-from-env",
                     "--constraint", "/etc/xdg/pip/constraints.txt"]
    assert environment == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
                           "UV_HTTP_TIMEOUT": "180"}
    assert install.uv_arguments(install.pip_options("")) == ([], {})
    offline = install.pip_options(":env:.no-index='true'\nglobal.find-links='/w'")
    assert install.uv_arguments(offline)[0] == ["--find-links", "/w", "--no-index"]


class Runner:
    """Records the commands install() runs; `fail` names the ones that exit 1."""

    def __init__(self, *fail: str):
        self.fail, self.commands = fail, []

    def __call__(self, command, **kwargs):
        self.commands.append((command, kwargs.get("env")))
        code = 1 if any(f in " ".join(command) for f in self.fail) else 0
        return subprocess.CompletedProcess(command, code, stdout=CONFIG, stderr="")


@pytest.fixture
def env(tmp_path) -> Path:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()  # an existing venv: install() creates none
    return tmp_path


def test_uv_installs_with_bytecode_and_pips_resolution_and_pip_is_the_fallback(env, capsys):
    run = Runner()
    assert install.install(env, "test", run=run) == "uv"
    (get_uv, _), _, (uv, uv_env) = run.commands
    assert get_uv[-2:] == ["install", install.UV]
    assert uv[:3] == [str(env / "bin" / "uv"), "pip", "install"]
    assert "--compile-bytecode" in uv  # else torch compiles again in every process, where
    # PYTHONDONTWRITEBYTECODE is set
    assert uv[uv.index("--index-strategy") + 1] == "unsafe-best-match"  # pip's own resolution
    assert uv[uv.index("--find-links") + 1] == "/opt/wheels-from-env"
    assert uv[-2:] == ["--editable", f"{install.ROOT}[test]"]
    assert uv_env["UV_HTTP_TIMEOUT"] == "180"

    run = Runner(install.UV)  # uv cannot be installed: pip installs, after a line saying so
    assert install.install(env, run=run) == "pip"
    assert run.commands[-1][0][-3:] == ["install", "--editable", str(install.ROOT)]
    assert "pip installs instead" in capsys.readouterr().err

    with pytest.raises(SystemExit, match="failed"):  # uv installed, the install fails: no retry
        install.install(env, run=Runner("--compile-bytecode"))
    with pytest.raises(SystemExit, match="usage"):
        install.main([])
