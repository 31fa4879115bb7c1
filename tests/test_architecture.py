"""The design's layering rules (docs/architecture.md), checked by parsing every import.

Imports inside functions count too: a lazy import is still a dependency.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "nodulelearn"

#: package -> the nodulelearn packages it must not import.
FORBIDDEN = {
    "datasets": ("losses", "models", "training", "sensitivity", "study"),
    "losses": ("datasets", "models", "training", "sensitivity", "study"),
    "models": ("training", "sensitivity", "study"),
    "sensitivity": ("training", "study"),
}
#: Neutral top-level modules every package may use: they import no package above them.
NEUTRAL = ("registry", "params", "atomic_files", "run_dir", "model_io", "locks", "determinism",
           "lazy", "keras_compat",
           "binary_metrics")


def _modules(package: str | None = None, root: pathlib.Path = PACKAGE) -> list[pathlib.Path]:
    return sorted((root / package if package else root).rglob("*.py"))


def _name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path, root: pathlib.Path = PACKAGE) -> set[str]:
    """Every module ``path`` imports (``from a import b`` yields ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), str(path))
    name = _name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _violations(package: str, forbidden: tuple[str, ...],
                root: pathlib.Path = PACKAGE) -> list[str]:
    bad = []
    for path in _modules(package, root):
        for module in sorted(imported_modules(path, root)):
            parts = module.split(".")
            if len(parts) >= 2 and parts[0] == "nodulelearn" and parts[1] in forbidden:
                bad.append(f"{path.relative_to(root)} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_the_design_allows(package):
    assert _violations(package, FORBIDDEN[package]) == []


def test_neutral_modules_import_no_package_above_them():
    above = ("datasets", "losses", "models", "training", "sensitivity", "study")
    bad = []
    for name in NEUTRAL:
        path = PACKAGE / f"{name}.py"
        assert path.is_file(), path
        bad += [f"{name}.py imports {m}" for m in imported_modules(path)
                if m.split(".")[:1] == ["nodulelearn"] and m.split(".")[1:2]
                and m.split(".")[1] in above]
    assert bad == []


#: The command line's runner (``run_main``, which every bin/ script ends with) parses the flags the
#: bin/ scripts declare, on their behalf; it declares and reads none.
COMMAND_LINE_RUNNER = ("cli_env.py",)


def test_library_code_reads_no_absl_flags():
    bad = [f"{p.relative_to(PACKAGE)} imports {m}" for p in _modules()
           if str(p.relative_to(PACKAGE)) not in COMMAND_LINE_RUNNER
           for m in imported_modules(p) if m == "absl.flags" or m.startswith("absl.flags.")]
    assert bad == []


def _calls_matplotlib_use(path: pathlib.Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "use" and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("matplotlib", "mpl")):
            return True
    return False


def test_library_code_never_switches_the_matplotlib_backend():
    """matplotlib.use switches a notebook user's backend: figures are built on
    matplotlib.figure.Figure instead, with no allow-list."""
    calling = {str(p.relative_to(PACKAGE)) for p in _modules() if _calls_matplotlib_use(p)}
    assert calling == set(), "matplotlib.use in the library"


def test_the_import_parser_sees_what_it_must(tmp_path):
    """The checks above can fail: the parser finds absolute, relative, lazy and from-imports."""
    root = tmp_path / "nodulelearn"
    (root / "datasets").mkdir(parents=True)
    module = root / "datasets" / "render.py"
    module.write_text("import nodulelearn.training\nfrom ..losses import registry\n"
                      "def f():\n    from nodulelearn import study\n    import absl.flags\n")
    found = imported_modules(module, root)
    assert {"nodulelearn.training", "nodulelearn.losses.registry", "nodulelearn.study",
            "absl.flags"} <= found
    assert _violations("datasets", FORBIDDEN["datasets"], root) == [
        "datasets/render.py imports nodulelearn.losses",
        "datasets/render.py imports nodulelearn.losses.registry",
        "datasets/render.py imports nodulelearn.study",
        "datasets/render.py imports nodulelearn.training"]
    figure = tmp_path / "fig.py"
    figure.write_text("import matplotlib\nmatplotlib.use('Agg')\n")
    assert _calls_matplotlib_use(figure)
