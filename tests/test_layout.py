"""The package's shape: no import cycles, no private names across modules,
the core below everything, and files saved by mpath-tf 0.1 still load."""

import ast
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("mpath_tf", "converters", "edge_bench")
SAVED_0_1 = pathlib.Path(__file__).parent / "data" / "saved_0_1"
SAVED_GATED = pathlib.Path(__file__).parent / "data" / "saved_gated"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(modules):
    """(importer, imported module, imported name or None) for every import
    statement, those inside functions included, resolved to our modules."""
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        yield name, alias.name, None
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in modules:
                        yield name, submodule, None
                    elif base in modules:
                        yield name, base, alias.name


def _graph():
    modules = _modules()
    edges = {m: set() for m in modules}
    for importer, imported, _ in _imports(modules):
        if imported != importer:
            edges[importer].add(imported)
    return edges


def _cycle(edges) -> list[str] | None:
    """One import cycle as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(module):
        state[module] = 1
        stack.append(module)
        for nxt in sorted(edges[module]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_checks_find_a_cycle_and_a_private_import():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# The packages, lowest first: a package imports only packages listed before
# it (converters and edge_bench sit beside the core: they take the core's
# layers and the shared modules, never the search).
LAYERS = (
    ("mpath_tf.errors",),
    ("mpath_tf.storage", "mpath_tf.progress", "mpath_tf.data"),
    ("mpath_tf.core", "edge_bench"),
    ("converters",),
    ("mpath_tf.training",),
    ("mpath_tf.tradeoff", "mpath_tf.baselines"),
    ("mpath_tf.pipeline",),
    ("mpath_tf.reporting",),
    ("mpath_tf.cli", "mpath_tf.tuning"),
    ("mpath_tf.__main__", "mpath_tf"),  # the entry point and the public API's re-exports
)


def _package(module: str) -> str:
    """The package of ``LAYERS`` a module belongs to (its longest prefix)."""
    names = [name for layer in LAYERS for name in layer]
    found = max((n for n in names if module == n or module.startswith(n + ".")), key=len,
                default=None)
    assert found, f"{module} is in no package of LAYERS: add it"
    return found


def _level(package: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if package in layer)


def _package_edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for importer, imported, _ in _imports(_modules()):
        a, b = _package(importer), _package(imported)
        if a != b:
            edges.setdefault((a, b), []).append(f"{importer} -> {imported}")
    return edges


def test_packages_import_only_downwards():
    """No package-level cycle (imports inside functions included): each
    package imports only the packages below it in ``LAYERS``."""
    upward = [f"{a} -> {b} ({', '.join(sorted(set(via))[:3])})"
              for (a, b), via in _package_edges().items()
              if _level(b) >= _level(a)]
    assert not upward, upward


def test_the_package_check_fails_on_a_cycle(monkeypatch):
    """The check above can fail: an edge from the pipeline up to the
    reporting package is reported."""
    real = _imports

    def with_upward_edge(modules):
        yield from real(modules)
        yield "mpath_tf.pipeline.run", "mpath_tf.reporting.report", None

    monkeypatch.setattr(sys.modules[__name__], "_imports", with_upward_edge)
    with pytest.raises(AssertionError, match="mpath_tf.pipeline -> mpath_tf.reporting"):
        test_packages_import_only_downwards()


def test_no_package_shadows_a_submodule():
    """A package's ``__init__`` binds no name of one of its own submodules
    (``converters.verify`` is the function; the module is ``converters.parity``)."""
    modules = _modules()
    shadowed = []
    for name, path in modules.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text()).body:
            bound = ([a.asname or a.name for a in node.names]
                     if isinstance(node, (ast.Import, ast.ImportFrom))
                     else [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
                     if isinstance(node, ast.Assign) else
                     [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [])
            shadowed += [f"{name}.{b}" for b in bound
                         if f"{name}.{b}" in modules and not (
                             isinstance(node, ast.ImportFrom) and node.module
                             and f"{node.module}.{b}" == f"{name}.{b}")]
    assert not shadowed, shadowed


def test_keras_graph_internals_are_read_in_one_module():
    """Only ``mpath_tf.core.graph`` reads Keras's private graph attributes."""
    readers = sorted(name for name, path in _modules().items()
                     if ("._inbound_nodes" in path.read_text()
                         or "._keras_history" in path.read_text())
                     and name != "mpath_tf.core.graph")
    assert not readers, readers


def test_no_private_names_imported_across_modules():
    modules = _modules()
    private = [f"{importer} imports {name} from {imported}"
               for importer, imported, name in _imports(modules)
               if name and name.startswith("_") and not name.startswith("__")
               and imported != importer]
    assert not private, private


def test_the_core_imports_nothing_above_it():
    above = ("mpath_tf.training", "mpath_tf.pipeline", "mpath_tf.tradeoff",
             "mpath_tf.reporting", "mpath_tf.baselines", "mpath_tf.cli", "converters", "edge_bench")
    edges = _graph()
    upward = [f"{m} -> {i}" for m in edges if m.startswith("mpath_tf.core")
              for i in edges[m] if i.startswith(above)]
    assert not upward, upward


@pytest.mark.parametrize("name", ["supernet", "derived_b3", "hypersupernet"])
def test_a_model_saved_by_0_1_loads_and_computes_the_same(name):
    from mpath_tf import load_model

    expected = np.load(SAVED_0_1 / "expected.npz")
    model = load_model(SAVED_0_1 / f"{name}.keras")
    np.testing.assert_allclose(model.predict(expected["x"], verbose=0), expected[name],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["gated_supernet", "hyper_supernet", "gated_stacks",
                                  "hyper_stacks"])
def test_a_gated_supernet_of_the_earlier_classes_loads_as_one_supernet(name):
    """GatedSupernet, HyperSupernet (the MLP's) and GatedStacks, HyperStacks
    (any shape's) files load as the one ``Supernet`` class, with the same
    function and the same architecture at each lam."""
    from mpath_tf import Supernet, derive, load_model

    expected = np.load(SAVED_GATED / "expected.npz")
    x = expected["images" if "stacks" in name else "x"]
    model = load_model(SAVED_GATED / f"{name}.keras")
    assert type(model) is Supernet
    assert model.trade_off == ("hypernet" if name.startswith("hyper") else "lambda")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected[name], rtol=1e-6, atol=1e-6)
    assert [len(w) for w in model.derived_layout()] == expected[f"{name}_widths"].tolist()
    np.testing.assert_allclose(derive(model)(x), expected[name], atol=1e-5)
    if name.startswith("hyper"):
        np.testing.assert_allclose(model(x, lam=0.6), expected[f"{name}_lam"], atol=1e-6)
        assert ([len(w) for w in model.derived_layout(lam=0.6)]
                == expected[f"{name}_lam_widths"].tolist())


def test_the_0_1_supernet_still_derives():
    from mpath_tf import derive, load_model
    from mpath_tf.core.permeability import discrete_permeability

    net = load_model(SAVED_0_1 / "supernet.keras")
    x = np.load(SAVED_0_1 / "expected.npz")["x"]
    model = derive(net, 3)
    hard = net(x, permeability=discrete_permeability(net.derived_widths(3)))
    np.testing.assert_allclose(model.predict(x, verbose=0), hard, atol=1e-5)


def test_the_0_1_tuning_entry_point_still_runs():
    """``python -m mpath_tf.tuning`` (the README's distributed command) is kept."""
    result = subprocess.run([sys.executable, "-m", "mpath_tf.tuning", "--help-not-a-run"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "ModuleNotFoundError" not in result.stderr
    assert "--help-not-a-run" in result.stderr  # it reached the run directory check


# Libraries worth deferring: an import inside a function may put off loading
# one of these (directly or through our modules) until the function runs.
HEAVY = {"tensorflow", "keras", "tf_keras", "tensorflow_model_optimization", "keras_tuner",
         "tensorflow_datasets", "ai_edge_litert", "tflite_runtime", "tflite_micro", "matplotlib",
         "scipy", "sklearn"}


def _function_imports(path: pathlib.Path, package: str):
    """(line, absolute module name) of each import statement inside a function."""
    tree = ast.parse(path.read_text())
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                yield from ((node.lineno, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def _heavy_modules(modules, libraries=HEAVY) -> set[str]:
    """Our modules whose import loads one of ``libraries``: directly, through
    a module they import at module level, or through a parent package."""
    loads: dict[str, set[str]] = {m: set() for m in modules}
    heavy = set()
    for name, path in modules.items():
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = ([a.name for a in node.names] if isinstance(node, ast.Import)
                           else [node.module or ""]
                           + [f"{node.module}.{a.name}" for a in node.names])
                for target in targets:
                    if target.split(".")[0] in libraries:
                        heavy.add(name)
                    while target and target not in modules:
                        target = target.rpartition(".")[0]
                    if target and target != name:
                        loads[name].add(target)
        parts = name.split(".")
        loads[name] |= {".".join(parts[:i]) for i in range(1, len(parts))} & set(modules)
    while grown := {m for m in modules if m not in heavy and loads[m] & heavy}:
        heavy |= grown
    return heavy


def test_imports_inside_functions_only_defer_heavy_libraries():
    """Imports sit at module level unless they defer a ``HEAVY`` library: in
    a module that loads no TensorFlow (so that an entry point such as
    ``mpath-tf --help`` starts without it), an import inside a function must
    load one; in a module that already loads TensorFlow, one of the others
    (LiteRT, TFLM, matplotlib, the legacy tf_keras, ...), which not every
    function needs."""
    modules = _modules()
    loads_tf = _heavy_modules(modules)
    others = HEAVY - {"tensorflow", "keras"}
    loads_other = _heavy_modules(modules, others)
    pointless = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deferrable = loads_other if name in loads_tf else loads_tf
        libraries = others if name in loads_tf else HEAVY | {"numpy"}
        for line, target in _function_imports(path, package):
            ours = target
            while ours and ours not in modules:
                ours = ours.rpartition(".")[0]
            if (ours not in deferrable) if ours else target.split(".")[0] not in libraries:
                pointless.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not pointless, pointless


def test_the_cli_loads_no_tensorflow_on_import():
    code = ("import sys, mpath_tf.cli; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
