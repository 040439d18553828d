"""Install the pipeline into a virtual environment: `python3 scripts/install.py .venv [test]`.

The packages are installed by uv (from PyPI, pinned below) rather than by pip: pip spends most
of a fresh venv's install compiling bytecode one file at a time, uv compiles the same on every
core (benchmarks/install_speed.py measures the two side by side). The bytecode matters: where PYTHONDONTWRITEBYTECODE is set, a venv
without it compiles torch again in every process that imports it (19 s instead of 7 s here).

uv does not read pip's configuration, so the options of it that choose packages (index, extra
indexes, no index, find-links, constraints, certificate, timeout) are passed on: the same pins resolve to
the same wheels either way (a CPU torch from a find-links folder stays the CPU torch). Where uv
cannot be installed, pip installs as before, after a line that says so. The venv keeps its own
pip, for the README's other install commands.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

UV = "uv==0.13.9"
ROOT = Path(__file__).resolve().parent.parent
# pip's option -> uv's flag (each value of a space-separated list is one flag)
FLAGS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url",
         "find-links": "--find-links", "constraint": "--constraint"}
# pip's switches uv has too (on where pip's configuration says true, yes, on or 1)
SWITCHES = {"no-index": "--no-index"}
# pip's option -> the environment variable uv reads for it
ENVIRONMENT = {"cert": "SSL_CERT_FILE", "default-timeout": "UV_HTTP_TIMEOUT"}


def pip_options(config_list: str) -> dict[str, str]:
    """The install options in `pip config list`'s output, as pip applies them: an environment
    variable (`:env:.key`) over the `install` section over `global`."""
    rank = {"global": 0, "install": 1, ":env:": 2}
    found: dict[str, tuple[int, str]] = {}
    for line in config_list.splitlines():
        name, sep, value = line.partition("=")
        section, _, key = name.strip().rpartition(".")
        if not sep or section not in rank:
            continue
        value = value.strip().strip("'\"")
        if key not in found or rank[section] >= found[key][0]:
            found[key] = (rank[section], value)
    return {key: value for key, (_, value) in found.items()}


def uv_arguments(options: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """uv's flags and environment for pip's options (pip_options)."""
    flags = [arg for key, flag in FLAGS.items() if key in options
             for value in options[key].split() for arg in (flag, value)]
    flags += [flag for key, flag in SWITCHES.items()
              if options.get(key, "").lower() in ("true", "yes", "on", "1")]
    environment = {var: options[key] for key, var in ENVIRONMENT.items() if key in options}
    return flags, environment


def install(env: Path, extra: str = "", run=subprocess.run) -> str:
    """Install the project (with `extra`'s optional dependencies) into `env`; return which
    installer did it ("uv" or "pip")."""
    python = env / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(env)
    target = f"{ROOT}[{extra}]" if extra else str(ROOT)
    pip = [str(python), "-m", "pip", "--quiet"]
    if run(pip + ["install", UV]).returncode == 0:
        listed = run([str(python), "-m", "pip", "config", "list"], capture_output=True, text=True)
        flags, environment = uv_arguments(pip_options(listed.stdout))
        # pip takes the best match over all its indexes; uv, by default, the first index holding
        # a package, which would refuse a pin that only a later index has
        command = [str(env / "bin" / "uv"), "pip", "install", "--quiet", "--compile-bytecode",
                   "--index-strategy", "unsafe-best-match", "--python", str(python), *flags,
                   "--editable", target]
        done = run(command, env={**os.environ, **environment})
        if done.returncode != 0:
            sys.exit(f"error: `{shlex.join(command)}` failed (exit {done.returncode}); "
                     "its output is above")
        return "uv"
    print(f"install: {UV} could not be installed; pip installs instead (about twice as slow)",
          file=sys.stderr)
    done = run(pip + ["install", "--editable", target])
    if done.returncode != 0:
        sys.exit(f"error: pip could not install {target} (exit {done.returncode}); "
                 "its output is above")
    return "pip"


def main(argv: list[str]) -> None:
    if not 1 <= len(argv) <= 2:
        sys.exit("usage: python3 scripts/install.py VENV [EXTRA]   (EXTRA: an optional "
                 "dependency group of pyproject.toml, such as test)")
    install(Path(argv[0]), argv[1] if len(argv) > 1 else "")


if __name__ == "__main__":
    main(sys.argv[1:])
