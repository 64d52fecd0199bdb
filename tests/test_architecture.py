"""The layout of csu_lib, checked by reading its source (no import of the modules under test).

- Layers: every import of every module (module-level and inside functions) goes to the same layer
  or a lower one, in the order written ONCE in the package docstring (``csu_lib/__init__.py``);
  no import cycle between modules; imports of csu_lib at module level only, and third-party
  imports inside functions only for the optional heavy dependencies.
- Size: no module over 400 lines.
- Analysis reads finished runs and imports no training code (:data:`FORBIDDEN_IMPORTS`).
- Ownership: nothing outside ``csu_lib/losses/`` inspects a loss for its learned ``s`` (or its clamp);
  sigma, the multiplier and the stationary optimum s* are defined once, in
  ``csu_lib/losses/reliability.py`` (no exp(s / 2), exp(-s) or log(2 * ...) anywhere else), and
  only ``records/`` reads the stored reliability block (``final_metrics["reliability"]``);
  nothing outside ``records/`` names a file of a run directory; one epoch loop: early stopping,
  batch order and seeds, and the optimiser's construction each live in exactly one module.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "csu_lib"
MAX_LINES = 400
#: Third-party modules that may be imported inside a function (optional extras, heavy to import).
OPTIONAL_IMPORTS = {"ray", "h5py", "plotly", "ipywidgets", "IPython", "papermill", "jupyter_client", "jupyter_core",
                    "PIL"}
#: Modules that may import csu_lib inside a function: the command line imports the stack of a
#: command when that command runs (``csu --help`` and argument errors import no PyTorch/pandas/SciPy).
#: (The registries' loader sits in ``csu_lib/__init__.py``, the package assembly point, skipped below.)
LAZY_CSU_IMPORTS = {"csu_lib.cli"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, tuple[Path, str]]:
    """{module name: (path, source)} of every module of csu_lib."""
    return {module_name(p): (p, p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def parse_layers(docstring: str) -> list[tuple[str, list[str]]]:
    """``[(layer, [module prefixes])]`` from the indented block of the package docstring."""
    layers = []
    for line in docstring.splitlines():
        m = re.fullmatch(r"\s{4}(\w+)\s+((?:csu_lib[\w.]*\s*)+)", line)
        if m:
            layers.append((m.group(1), m.group(2).split()))
    return layers


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    """Index of the layer a module belongs to (longest matching prefix), None if none."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of a (possibly relative) ``from ... import``."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, path: Path, source: str, known: set[str]) -> list[tuple[str, int, bool]]:
    """``[(imported module, line, at module level)]``; ``from pkg import sub`` also yields
    ``pkg.sub`` when that is a module of ``known``."""
    tree = ast.parse(source)
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((alias.name, node.lineno, id(node) in top))
        elif isinstance(node, ast.ImportFrom):
            target = resolve(module, path.name == "__init__.py", node)
            out.append((target, node.lineno, id(node) in top))
            for alias in node.names:
                if f"{target}.{alias.name}" in known:
                    out.append((f"{target}.{alias.name}", node.lineno, id(node) in top))
    return out


def _is_ancestor(target: str, module: str) -> bool:
    return module.startswith(target + ".")


def violations(mods: dict[str, tuple[Path, str]], layers: list[tuple[str, list[str]]]) -> list[str]:
    """Every import that goes up the layer order, every csu_lib module outside the layers, and
    every function-level import that is not an optional heavy dependency."""
    known = set(mods)
    out = []
    for module, (path, source) in mods.items():
        if module == "csu_lib":  # the package assembly point: imports the registering packages
            continue
        here = layer_of(module, layers)
        if here is None:
            out.append(f"{module} belongs to no layer of the package docstring")
            continue
        for target, line, top_level in imports(module, path, source, known):
            if _is_ancestor(target, module):  # ``from . import x``: the parent package is always imported first
                continue
            if target.split(".")[0] != "csu_lib":
                if not top_level and target.split(".")[0] not in OPTIONAL_IMPORTS:
                    out.append(f"{module}:{line} imports {target} inside a function")
                continue
            if not top_level and module not in LAZY_CSU_IMPORTS:
                out.append(f"{module}:{line} imports {target} inside a function")
            there = layer_of(target, layers)
            if target == "csu_lib" or there is None or there > here:
                out.append(f"{module}:{line} imports {target} (layer "
                           f"{layers[there][0] if there is not None else '?'}) from layer {layers[here][0]}")
    return out


def cycles(mods: dict[str, tuple[Path, str]]) -> list[list[str]]:
    """Import cycles between csu_lib modules (module-level imports)."""
    known = set(mods)
    graph = {m: sorted({t for t, _, top in imports(m, p, s, known)
                        if top and t in known and t != m and not _is_ancestor(t, m)}) for m, (p, s) in mods.items()}
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                found.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)
    return found


LAYERS = parse_layers(ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text())))
MODULES = sources()


def test_the_docstring_lists_the_layers_once():
    names = [name for name, _ in LAYERS]
    assert names[:3] == ["core", "config", "data"] and "training" in names and "plots" in names
    assert len(names) == len(set(names))
    prefixes = [p for _, ps in LAYERS for p in ps]
    assert len(prefixes) == len(set(prefixes))


def test_no_upward_import_and_no_function_level_import():
    assert violations(MODULES, LAYERS) == []


def test_no_import_cycle():
    assert cycles(MODULES) == []


def test_the_checks_catch_an_upward_import_and_a_cycle():
    """The checker itself: a plotting import added to the loss module is reported, and so is a
    cycle made by a config module importing models."""
    path, source = MODULES["csu_lib.losses"]
    bad = {**MODULES, "csu_lib.losses": (path, source + "\nfrom ..plots import PALETTE\n")}
    assert any("csu_lib.losses" in v and "csu_lib.plots" in v for v in violations(bad, LAYERS))
    path, source = MODULES["csu_lib.config.run"]
    inside = source + "\n\ndef _f():\n    from ..models import MODELS\n    return MODELS\n"
    reported = violations({**MODULES, "csu_lib.config.run": (path, inside)}, LAYERS)
    assert any("inside a function" in v for v in reported) and any("layer models" in v for v in reported)
    looped = {**MODULES, "csu_lib.config.run": (path, source + "\nfrom ..models import registry\n")}
    assert cycles(looped)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_400_lines(module):
    path, source = MODULES[module]
    assert len(source.splitlines()) <= MAX_LINES, f"{path} has {len(source.splitlines())} lines"


def _code_nodes(source: str):
    """The AST nodes of a module outside its docstrings."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [n for n in ast.walk(tree) if id(n) not in docstrings]


def test_nothing_outside_losses_inspects_a_loss_for_its_learned_s():
    offenders = []
    for module, (path, source) in MODULES.items():
        if module == "csu_lib.losses" or module.startswith("csu_lib.losses."):
            continue
        nodes = _code_nodes(source)
        called = {id(n.func) for n in nodes if isinstance(n, ast.Call)}  # tensor.clamp(...) is a method call
        for node in nodes:
            if isinstance(node, ast.Attribute) and (node.attr == "s" or
                                                    node.attr == "clamp" and id(node) not in called):
                offenders.append(f"{module}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Name) and node.id == "CSULoss" or \
                    isinstance(node, ast.alias) and node.name == "CSULoss":  # use losses.reliability(loss)
                offenders.append(f"{module}: CSULoss")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance" and \
                    "Reliability" in ast.unparse(node.args[1]):
                offenders.append(f"{module}:{node.lineno} isinstance(..., {ast.unparse(node.args[1])})")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in ("hasattr", "getattr") and len(node.args) > 1 and \
                    isinstance(node.args[1], ast.Constant) and node.args[1].value in ("s", "clamp", "scale"):
                offenders.append(f"{module}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    assert offenders == []


#: The module that defines sigma, the multiplier and s* (and may compute them).
RELIABILITY_OWNER = "csu_lib.losses.reliability"


def _called_name(node: ast.Call) -> str:
    """``exp`` for ``np.exp(...)``, ``torch.exp(...)``, ``math.exp(...)``, ``exp(...)`` or a private
    ``_exp(...)``."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name.lstrip("_")


def _factors(node: ast.AST) -> list[ast.AST]:
    """The operands of a product ``a * b * c`` (the node itself when it is no product)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _factors(node.left) + _factors(node.right)
    return [node]


def _is_number(node: ast.AST, value: float) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and node.value == value


def _is_half_of(node: ast.AST) -> bool:
    """``x / 2`` or ``x * 0.5`` / ``0.5 * x``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _is_number(node.right, 2):
        return True
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and \
        any(_is_number(f, 0.5) for f in _factors(node))


def reliability_definitions(source: str) -> list[str]:
    """Code (not docstrings) that defines sigma, the multiplier or s* a second time: exp of
    ``x / 2`` or ``x * 0.5`` (sigma), exp of a negated value (the multiplier exp(-s)), log of a
    product with the factor 2 (s* = log(2 * scale * mean loss)). Also every read of the stored
    reliability block, ``final_metrics["reliability"]`` or ``.get("reliability")``."""
    found = []
    for node in _code_nodes(source):
        if isinstance(node, ast.Call) and node.args:
            name, arg = _called_name(node), node.args[0]
            if name == "exp" and _is_half_of(arg):
                found.append(f"{node.lineno}: sigma as exp({ast.unparse(arg)})")
            elif name == "exp" and isinstance(arg, ast.UnaryOp) and isinstance(arg.op, ast.USub):
                found.append(f"{node.lineno}: multiplier as exp({ast.unparse(arg)})")
            elif name == "log" and any(_is_number(f, 2) for f in _factors(arg)) and len(_factors(arg)) > 1:
                found.append(f"{node.lineno}: s* as log({ast.unparse(arg)})")
            elif name == "get" and isinstance(arg, ast.Constant) and arg.value == "reliability":
                found.append(f"{node.lineno}: reads {ast.unparse(node)}")
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and \
                isinstance(node.slice, ast.Constant) and node.slice.value == "reliability":
            found.append(f"{node.lineno}: reads {ast.unparse(node)}")
    return found


def test_sigma_the_multiplier_and_s_star_are_defined_once():
    """One definition of sigma, the multiplier and the stationary optimum s*
    (``csu_lib/losses/reliability.py``); the stored reliability block is read by the run record
    only (``RunRecord.final_log_sigma2``, ``.optimum_log_sigma2``, ``.stationarity``)."""
    offenders = []
    for module, (_, source) in MODULES.items():
        if module == RELIABILITY_OWNER:
            continue
        for hit in reliability_definitions(source):
            if module.startswith("csu_lib.records") and "reads" in hit:
                continue
            offenders.append(f"{module}:{hit}")
    assert offenders == []


@pytest.mark.parametrize("planted, what", [
    ("sigma = np.exp(s / 2)\n", "sigma"),
    ("sigma = torch.exp(0.5 * log_sigma2)\n", "sigma"),
    ("m = scale * np.exp(-s)\n", "multiplier"),
    ("s_star = np.log(2 * scale * bce.mean(0))\n", "s*"),
    ("s_star = np.log(bce.mean(0) * 2)\n", "s*"),
    ("s = record.final_metrics['reliability']['log_sigma2']\n", "reads"),
    ("s = (record.final_metrics or {}).get('reliability')\n", "reads"),
])
def test_the_check_catches_a_planted_second_definition(planted, what):
    """The checker itself: a planted second definition is reported, with its line; the real
    definitions are what it finds in csu_lib/losses/reliability.py."""
    path, source = MODULES["csu_lib.analysis.class_noise_audit"]
    assert reliability_definitions(source) == []
    n_lines = len(source.splitlines())
    hits = reliability_definitions(source + "\n" + planted)
    assert len(hits) == 1 and hits[0].startswith(f"{n_lines + 2}: {what}")
    # the same text in a comment or a string is no definition
    assert reliability_definitions(source + f"\n# {planted}\nNOTE = {planted!r}\n") == []
    owner = reliability_definitions(MODULES[RELIABILITY_OWNER][1])
    assert any("sigma" in h for h in owner) and any("multiplier" in h for h in owner) and \
        any("s*" in h for h in owner)


def _run_file_names() -> set[str]:
    tree = ast.parse(MODULES["csu_lib.records.layout"][1])
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            names.add(node.value.value)
    return names


def test_nothing_outside_records_names_a_run_file():
    names = _run_file_names()
    assert {"record.json", "model.pt", "checkpoint.pt", "log_sigma2.npy", "sigma.npy", "history.json"} <= names
    pattern = re.compile(r"(scores_|corruption_|teacher_scores).*\.(npy|json)")
    offenders = []
    for module, (path, source) in MODULES.items():
        if module.startswith("csu_lib.records"):
            continue
        for node in _code_nodes(source):
            if isinstance(node, ast.JoinedStr):  # f"scores_{split}.npy" -> "scores_{}.npy"
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            if text in names or pattern.fullmatch(text):
                offenders.append(f"{module}:{node.lineno} {text!r}")
    assert offenders == []


def _without_docstrings(source: str) -> str:
    """The module's code without docstrings and comments (an ast round trip; numbers lose their
    underscores)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


@pytest.mark.parametrize("pattern, owner", [
    (r"early_stopping_patience|bad_epochs \+= 1", "csu_lib.training.engine"),  # early stopping
    (r"self\.best = \{", "csu_lib.training.engine"),                         # best-weight tracking
    (r"torch\.randperm|SEED_STRIDE|1000003|manual_seed\(", "csu_lib.training.seeding"),  # seeds
    (r"torch\.optim\.(Adam|AdamW|SGD)\b", "csu_lib.training.optimiser"),        # optimiser groups
])
def test_one_implementation_of_each_training_piece(pattern, owner):
    """One epoch loop: the stacked, DDP and single-process backends contain no copy of early
    stopping, best-weight tracking, the seed formulas or the optimiser set-up."""
    where = [module for module, (_, source) in MODULES.items()
             if module.startswith("csu_lib.training") and re.search(pattern, _without_docstrings(source))]
    assert where == [owner]


#: Calls that compute a statistic (means, spreads, quantiles, intervals, bootstraps, densities,
#: rankings, top-k): csu_lib.analysis computes them, a figure module only draws the numbers.
STATISTIC_CALLS = {"mean", "nanmean", "median", "nanmedian", "std", "nanstd", "var", "nanvar", "sem", "average",
                   "percentile", "nanpercentile", "quantile", "nanquantile", "histogram", "histogram2d", "bincount",
                   "describe", "agg", "aggregate", "corr", "corrcoef", "cov", "mean_ci", "bootstrap", "bootstrap_ci",
                   "gaussian_kde", "sigma_kde", "rank_agreement", "spearmanr", "pearsonr", "rankdata", "rank",
                   "argsort", "argpartition", "top_k", "nlargest", "nsmallest"}
#: Modules a figure module may not import from: statistics (the analysis layer's constants are allowed).
STATISTIC_MODULES = ("csu_lib.core.stats", "scipy", "statsmodels", "sklearn")


def statistics_in_figures(mods: dict[str, tuple[Path, str]]) -> list[str]:
    """Every statistic a ``csu_lib.plots`` module computes: a call of :data:`STATISTIC_CALLS`
    (``np.mean(...)``, ``values.mean()``, ``mean_ci(...)``), an import from
    :data:`STATISTIC_MODULES`, or a function imported from ``csu_lib.analysis`` (constants, in
    capitals, are allowed)."""
    out = []
    for module, (path, source) in mods.items():
        if not (module == "csu_lib.plots" or module.startswith("csu_lib.plots.")):
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name in STATISTIC_CALLS:
                    out.append(f"{module}:{node.lineno} calls {name}")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                target = resolve(module, path.name == "__init__.py", node) if isinstance(node, ast.ImportFrom) else ""
                names = [a.name for a in node.names]
                for full in ([target] if target else []) + ([] if target else names):
                    if any(full == m or full.startswith(m + ".") for m in STATISTIC_MODULES):
                        out.append(f"{module}:{node.lineno} imports {full}")
                if target.startswith("csu_lib.analysis") and any(not n.isupper() for n in names):
                    out.append(f"{module}:{node.lineno} imports {[n for n in names if not n.isupper()]} from {target}")
    return out


def test_figure_modules_draw_only_and_compute_no_statistic():
    """csu_lib.plots draws numbers computed by csu_lib.analysis: no mean, interval, bootstrap,
    density, ranking or top-k in a figure module; and the check catches each kind of offence."""
    assert statistics_in_figures(MODULES) == []
    path, source = MODULES["csu_lib.plots.planes"]
    planted = {
        "values.mean(axis=0)": "calls mean", "np.nanmean(values)": "calls nanmean",
        "np.percentile(values, 95)": "calls percentile", "mean_ci(values)": "calls mean_ci",
        "gaussian_kde(values)(grid)": "calls gaussian_kde", "order = np.argsort(-sigma)": "calls argsort",
        "from ..core.stats import top_k": "imports csu_lib.core.stats", "from scipy import stats": "imports scipy",
        "import scipy.stats": "imports scipy.stats",
        "from ..analysis.sigma_stats import sigma_vs_truth": "from csu_lib.analysis.sigma_stats",
    }
    for snippet, reported in planted.items():
        found = statistics_in_figures({"csu_lib.plots.planes": (path, source + "\n" + snippet + "\n")})
        assert len(found) == 1 and reported in found[0], (snippet, found)


#: Pairs of stages where the lower may not be imported although the layer order would allow it:
#: analysis reads finished runs (records, the data pipeline, ``pipeline.trained``) and never the
#: training code.
FORBIDDEN_IMPORTS = (("csu_lib.analysis", "csu_lib.training"),)


def forbidden_imports(mods: dict[str, tuple[Path, str]]) -> list[str]:
    known = set(mods)
    return [f"{module}:{line} imports {target}" for module, (path, source) in mods.items()
            for importer, imported in FORBIDDEN_IMPORTS if module.startswith(importer)
            for target, line, _ in imports(module, path, source, known)
            if target == imported or target.startswith(imported + ".")]


def test_analysis_imports_no_training_code():
    assert forbidden_imports(MODULES) == []
    path, source = MODULES["csu_lib.analysis.sigma"]
    planted = source + "\nfrom ..training import train_run\n"
    assert forbidden_imports({"csu_lib.analysis.sigma": (path, planted)}) == [
        f"csu_lib.analysis.sigma:{planted.count(chr(10))} imports csu_lib.training"]
