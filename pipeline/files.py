"""Atomic, deterministic file output shared by every stage.

Every file the pipeline writes goes through `atomic_write`: the bytes land in a temporary file in
the same directory, are flushed to disk, and only then renamed over the target. A run killed at
any moment leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` whole or not at all. The file gets the mode a plain open() would
    give it (0666 less the umask), not mkstemp's private 0600, so a web server can serve it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name tells remove_stale_temps whether a build may still rename it
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def code_digest(directory: Path, names) -> str:
    """Hash of the named Python modules of `directory`, taken over their parsed syntax trees
    without docstrings: a comment or docstring edit keeps it, any change to what runs changes
    it. Pure Python (dodo.py calls it at load time)."""
    import ast

    h = hashlib.sha256()
    for name in names:
        tree = ast.parse((Path(directory) / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                    and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        h.update(name.encode() + ast.dump(tree).encode())
    return h.hexdigest()[:16]


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_json(path: str | Path, obj) -> Path:
    return atomic_write(path, json_bytes(obj))


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def png_bytes(image, text: dict[str, str] | None = None) -> bytes:
    """Encode a PIL image as PNG with optional text chunks; the same image gives the same bytes."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, optimize=False, compress_level=6)
    return buf.getvalue()


def write_png(path: str | Path, image, text: dict[str, str] | None = None) -> Path:
    return atomic_write(path, png_bytes(image, text))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


STALE_SECONDS = 3600  # a temp file without a writer pid in its name is left alone this long


def _writer_alive(temp: Path) -> bool:
    """Whether the process that is writing `temp` may still be running."""
    import time

    parts = temp.name[:-len(".tmp")].rsplit(".", 2)
    if len(parts) == 3 and parts[1].isdigit():
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return time.time() - temp.stat().st_mtime < STALE_SECONDS


def remove_stale_temps(directory: str | Path) -> int:
    """Delete temporary files an interrupted run left behind; returns how many. A temp file
    whose writer is still running (another `doit` in progress) is left alone, so `doit list`
    in a second terminal never breaks a build's atomic renames."""
    n = 0
    directory = Path(directory)
    if directory.is_dir():
        for p in directory.rglob(".*.tmp"):
            if p.exists() and not _writer_alive(p):
                p.unlink(missing_ok=True)
                n += 1
    return n


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a .safetensors file, read from its header (no torch needed)."""
    import struct

    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    return header.get("__metadata__", {})


def safetensors_bytes(tensors: dict, metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)


def prune(directory: str | Path, keep: set[str], suffix: str) -> list[str]:
    """Remove the files named *suffix in `directory` that are not in `keep` (file names): cached
    results of generations the spec no longer has. Returns the names removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    gone = sorted(p.name for p in directory.glob(f"*{suffix}") if p.name not in keep)
    for name in gone:
        (directory / name).unlink(missing_ok=True)
    return gone
