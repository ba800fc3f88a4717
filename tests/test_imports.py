"""The import graph of the package: the library never imports a command (a ``python -m jaxse.X`` module or the
command-line convention ``jaxse.cli`` they share) nor a layer above its own; one module calls soundfile.

The graph is read from the source (``ast``), imports inside functions included, so an import that only runs on some
path counts as much as one at the top of a module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import jaxse

ROOT = Path(jaxse.__file__).resolve().parent

#: The command modules, and ``jaxse.cli`` (their shared keys, errors and exit policy): they parse keys and call the
#: library; nothing in the library imports them.
COMMANDS = frozenset({
    "jaxse.cli",
    "jaxse.enhance",
    "jaxse.evaluate",
    "jaxse.stream",
    "jaxse.live",
    "jaxse.train.__main__",
    "jaxse.export.__main__",
    "jaxse.convert.__main__",
    "jaxse.models.__main__",
    "jaxse.pretrained.__main__",
})

#: The library's layers, lowest first: a module imports its own layer or a lower one. A name is a module or a
#: package (with everything under it).
LAYERS = (
    ("jaxse", "jaxse.errors", "jaxse.signal", "jaxse.cache", "jaxse.latency"),  # foundations
    ("jaxse.nn", "jaxse.metrics", "jaxse.losses", "jaxse.optim"),  # pure functions and layers
    ("jaxse.models",),
    ("jaxse.io",),  # files: audio, checkpoints (which build models), the shipped models' files
    ("jaxse.config", "jaxse.data", "jaxse.inference", "jaxse.scoring", "jaxse.convert", "jaxse.export",
     "jaxse.pretrained"),
    ("jaxse.train",),
)

def _module_name(path: Path) -> str:
    parts = ("jaxse",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; ``from P import m`` gives ``P.m`` when ``m`` is a module)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names
                       if mod.startswith("jaxse") and _exists(f"{mod}.{a.name}"))
    return out


def _graph() -> dict[str, set[str]]:
    # An installed (non-editable) jaxse also holds the experiments' scripts as jaxse.experiments: they are users of
    # the library (recipes, benchmarks, the tour), not part of it.
    return {_module_name(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))
            if not _module_name(p).startswith("jaxse.experiments")}


def _layer(name: str) -> int | None:
    best = None
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            if name == entry or (entry != "jaxse" and name.startswith(entry + ".")):
                if best is None or len(entry) > best[1]:
                    best = (i, len(entry))
    return None if best is None else best[0]


def test_the_graph_is_read():
    g = _graph()
    assert "jaxse.io.audio" in g["jaxse.data.index"]  # a top-level import
    assert "jaxse.scoring" in g["jaxse.evaluate"]
    assert "jaxse.data.pipeline" in g["jaxse.scoring"]  # inside a function
    assert set(COMMANDS) <= set(g)


def test_the_library_imports_no_command():
    bad = sorted((m, i) for m, imps in _graph().items() if m not in COMMANDS
                 for i in imps if i in COMMANDS)
    assert not bad, "library modules import commands: " + ", ".join(f"{m} -> {i}" for m, i in bad)


def test_commands_import_no_other_command():
    bad = sorted((m, i) for m, imps in _graph().items() if m in COMMANDS
                 for i in imps if i in COMMANDS - {"jaxse.cli"} and i != m)
    assert not bad, "commands import commands: " + ", ".join(f"{m} -> {i}" for m, i in bad)


def test_no_module_imports_a_layer_above_its_own():
    g = _graph()
    for m in g:
        assert m in COMMANDS or _layer(m) is not None, f"{m} is in no layer of LAYERS"
    bad = sorted((m, i) for m, imps in g.items() if m not in COMMANDS
                 for i in imps if i.startswith("jaxse") and i not in COMMANDS and _layer(i) is not None
                 and _layer(i) > _layer(m))
    assert not bad, "imports upward: " + ", ".join(f"{m} -> {i}" for m, i in bad)


def test_only_io_audio_calls_soundfile():
    users = sorted(m for m, imps in _graph().items() if "soundfile" in imps)
    assert users == ["jaxse.io.audio"], users


def test_every_function_fits_on_a_screen_or_says_why():
    """About 60 lines per function; a longer one says why in a comment starting ``# Longer than a screen:`` among
    its first lines (after the docstring)."""
    too_long = []
    for path in sorted(ROOT.rglob("*.py")):
        if _module_name(path).startswith("jaxse.experiments"):
            continue
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                body_start = node.body[0].end_lineno if ast.get_docstring(node) else node.lineno
                head = lines[body_start:body_start + 3]
                if not any(h.strip().startswith("# Longer than a screen:") for h in head):
                    too_long.append(f"{_module_name(path)}.{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not too_long, too_long
