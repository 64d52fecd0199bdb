"""What each figure of the suite shows, and its key numbers.

:data:`CATALOG` maps a figure name (the stem of its files in ``figures/``) to the notebook that
makes it, a title and a one-sentence reading; :func:`key_numbers` reads the few numbers a reader
looks for first from the figure's JSON (the plotted numbers, laid out by the figure's function in
:mod:`csu_lib.report.figure_numbers`, :data:`~csu_lib.report.figure_numbers.FIGURE_NUMBERS`).
Nothing here computes a statistic: intervals and means are the ones the notebooks stored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .figure_numbers import TRUTH_ESTIMATORS

Rows = list[tuple[str, str]]


@dataclass(frozen=True)
class FigureEntry:
    notebook: str
    title: str
    reading: str


CATALOG: dict[str, FigureEntry] = {
    "corruption_class_rates": FigureEntry(
        "corruption", "Where the corruption lands",
        "The share of each class's training clips whose labels each corruption kind changed: which classes the "
        "injected noise hits, before any model is trained."),
    "corruption_label_counts": FigureEntry(
        "corruption", "Positive labels per class",
        "Positive labels per class in the clean training labels and after each corruption kind."),
    "corruption_man_transitions": FigureEntry(
        "corruption", "MAN transitions",
        "For the clips whose label MAN misassigned, the class a positive was taken from (rows) and the class it "
        "was given to (columns)."),
    "corruption_sln_soft_values": FigureEntry(
        "corruption", "SLN soft values",
        "The distribution of the soft target values SLN gave the labels it corrupted."),
    "degradation": FigureEntry(
        "degradation", "Degradation curves",
        "Test mAP against the corruption rate for BCE and CSU, one panel per corruption kind: lines are means "
        "over seeds, bands 95% Student-t intervals."),
    "degradation_uneven": FigureEntry(
        "degradation", "Uneven noise: corrupted vs control classes",
        "Test mAP of BCE and CSU under the audit design (half the classes corrupted at graded levels, the rest "
        "untouched) over all, the corrupted and the control classes, with the paired difference of CSU to BCE "
        "per group: mean and 95% Student-t interval over seeds."),
    "relative_change": FigureEntry(
        "degradation", "Relative change",
        "Change of test mAP at the chosen corruption rate relative to clean training with the same loss and seed, "
        "in percent, mean and 95% interval over seeds."),
    "sigma_trajectory": FigureEntry(
        "sigma_trajectory", "CSU multiplier over training",
        "The class-wise median multiplier exp(-s) = 1/sigma^2 of the learned s at the end of every epoch (solid) "
        "and of the same epoch's s*, the optimum of its own training steps (dashed, same colour), against "
        "training progress per condition (geometric mean and 95% band over seeds); where they part, the learned "
        "s is not at its optimum."),
    "sigma_kde": FigureEntry(
        "sigma_analysis", "Learned sigma across classes",
        "The density of the learned per-class sigma of the selected model per condition (top), and of the sigma "
        "at s*, the stationary optimum of the same network (bottom), over all classes and seeds."),
    "sigma_vs_truth": FigureEntry(
        "sigma_analysis", "Does sigma find the corrupted classes?",
        "AUROC of the learned sigma, of the base-rate-normalised learned sigma and of the sigma at s* of the "
        "same network, separating corrupted from control classes, per corruption kind and within-class rate, "
        "with 95% intervals over seeds; 0.5 is chance."),
    "class_noise_audit": FigureEntry(
        "sigma_analysis", "Class-noise audit",
        "Each estimator of class unreliability scored against the injected truth: AUROC corrupted vs control "
        "(left) and Spearman with the true rate with the base rate partialled out (right)."),
    "score_plane": FigureEntry(
        "score_plane", "Score-plane loss surfaces",
        "The training loss over the logits of the most confused class pair for one clip type, BCE beside CSU, "
        "with the training clips of that type drawn at their scores."),
    "landscape_1d": FigureEntry(
        "landscape", "1-D loss landscape",
        "The training loss along one filter-normalised random direction through the trained weights (alpha 0), "
        "per condition and loss."),
    "landscape_2d": FigureEntry(
        "landscape", "2-D loss landscape",
        "The training loss over a plane of two filter-normalised random directions through the trained weights, "
        "per condition and loss."),
    "landscape_geometry": FigureEntry(
        "landscape", "Local geometry",
        "Top Hessian eigenvalue, Hessian trace, epsilon-sharpness and mean loss rise at the trained weights, "
        "BCE beside CSU per condition (each under its own loss unless eval_loss is bce)."),
    "class_precision": FigureEntry(
        "class_precision", "Class-wise precision",
        "Test precision per class at the decision threshold, BCE against CSU, over the seeds of one corruption "
        "setting."),
    "method_comparison": FigureEntry(
        "comparison", "Methods compared",
        "Test mAP of each method under one corruption setting, mean and 95% interval over seeds, with the "
        "paired difference to plain BCE on the same seeds."),
    "mask_sweep": FigureEntry(
        "comparison", "Teacher loss masking sweep",
        "Test mAP of teacher loss masking against the percentage of positive labels it discards (0% is plain "
        "BCE), mean and 95% interval over seeds."),
    "quickstart_history": FigureEntry(
        "quickstart", "One run, epoch by epoch",
        "Training loss and validation mAP per epoch of the quickstart run."),
    "quickstart_sigma": FigureEntry(
        "quickstart", "One run's sigma per class",
        "The learned sigma of every class in the quickstart run, beside the class's injected corruption rate."),
    "explorer": FigureEntry(
        "explorer", "Explorer: the default view",
        "Validation mAP of the selected runs, one class's CSU multiplier over training, test mAP of every method "
        "there, and that class's precision per method with its true corruption rate."),
}


def key_numbers(name: str, numbers: dict) -> Rows:
    """The key numbers of figure ``name`` from its JSON (``[(label, value)]``); a figure outside the
    catalog, or a JSON of an unexpected shape, gives a row that says so."""
    reader = _READERS.get(name)
    if reader is None:
        return []
    try:
        return reader(numbers)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return [("key numbers", f"not readable from {name}.json ({type(exc).__name__}: {exc})")]


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ci(row: dict, mean: str, lo: str = "ci_lo", hi: str = "ci_hi", digits: int = 3) -> str:
    text = f"{_f(row[mean], digits)} [{_f(row.get(lo), digits)}, {_f(row.get(hi), digits)}]"
    return text + (f", n = {row['n']}" if "n" in row else "")


def _pct(ratio: float) -> str:
    return f"{100 * ratio:.0f}%"


def _corruption_rates(js: dict) -> Rows:
    return [(f"{kind}: corrupted training clips", f"{r['n_corrupted']} of {js['n_train']}")
            for kind, r in js["rates"].items()]


def _label_counts(js: dict) -> Rows:
    return [(f"{kind}: positive labels (sum over classes)", str(sum(v))) for kind, v in js["counts"].items()]


def _transitions(js: dict) -> Rows:
    rows = [("transitions", f"{int(sum(map(sum, js['matrix'])))} for {js['n_corrupted']} MAN-corrupted clips")]
    if js.get("within_family") is not None:
        rows.append(("within a class family", str(js["within_family"])))
    return rows


def _soft_values(js: dict) -> Rows:
    values = js.get("values", [])
    return [("soft values", f"{len(values)} in [{_f(min(values, default=math.nan))}, "
                            f"{_f(max(values, default=math.nan))}]")]


def _top_ratio(rows: Iterable[dict]) -> float:
    return max(r["ratio"] for r in rows)


def _degradation(js: dict) -> Rows:
    table, out = js["table"], []
    top = _top_ratio(table)
    clean_done = set()
    for r in table:
        key = (r["loss.name"], r.get("method.name"), r["model.name"])
        if r["ratio"] == 0 and key not in clean_done:
            clean_done.add(key)
            out.append((f"{r['loss.name']} clean ({r['model.name']})", _ci(r, js["metric"])))
    for r in table:
        if r["ratio"] == top:
            out.append((f"{r['loss.name']} {r['kind']} {_pct(top)} ({r['model.name']})", _ci(r, js["metric"])))
    for r in js.get("paired_difference") or []:
        if r["ratio"] == top:
            out.append((f"{r['difference']}, {r['kind']} {_pct(top)} (paired)", _ci(r, "mean")))
    conv = js.get("convergence") or []
    if conv:
        out.append(("runs that stopped on a plateau / hit the epoch cap",
                    f"{sum(bool(c.get('stopped_early')) for c in conv)} / {sum(bool(c.get('hit_epoch_cap')) for c in conv)}"
                    f" of {len(conv)}"))
        judged = [c for c in conv if c.get("converged") is not None and c.get("converged") == c.get("converged")]
        if judged:
            out.append(("runs converged (last 10% of epochs: training loss < 2%, validation mAP < 0.01)",
                        f"{sum(bool(c['converged']) for c in judged)} of {len(judged)}"))
    return out


def _uneven(js: dict) -> Rows:
    level = _pct(js["design"]["ratio"])
    out = [(f"{r['loss.name']} {r['kind']} {level} (audit), {r['group']} classes ({r['model.name']})",
            _ci(r, "mean")) for r in js["table"]]
    out += [(f"{r['difference']}, {r['kind']} {level} (audit), {r['group']} classes (paired)", _ci(r, "mean"))
            for r in js.get("paired_difference") or []]
    return out


def _relative(js: dict) -> Rows:
    return [(f"{r['loss.name']} {r['kind']} {_pct(r['ratio'])} ({r['model.name']}), % change", _ci(r, "change_percent", digits=1))
            for r in js["table"]]


def _trajectory(js: dict) -> Rows:
    out = []
    for label, c in js["curves"].items():
        out.append((f"{label}: final multiplier of the learned s (mean over {c['n_runs'][-1]} runs)",
                    f"{_f(c['mean'][-1], 2)} [{_f(c['lo'][-1], 2)}, {_f(c['hi'][-1], 2)}]"))
        if _f((c.get("optimum") or [None])[-1]) != "n/a":
            out.append((f"{label}: final multiplier of the last epoch's s*",
                        f"{_f(c['optimum'][-1], 2)} [{_f(c['optimum_lo'][-1], 2)}, {_f(c['optimum_hi'][-1], 2)}]"))
    runs = js["stationarity"]["runs"] or []
    out.append(("largest median |s - s*| (stationarity gap)", f"{js['stationarity']['max_median_abs_gap']:.2g}"))
    if runs and "n_at_clamp" in runs[0]:
        out.append(("classes of the learned s on the clamp, per run", ", ".join(str(r["n_at_clamp"]) for r in runs)))
    return out


def _kde(js: dict) -> Rows:
    table = js["sigma_by_run_class"]
    out = []
    for cond in dict.fromkeys(table["condition"]):
        sig = sorted(s for c, s in zip(table["condition"], table["sigma"]) if c == cond)
        out.append((f"{cond}: median learned sigma over classes and runs", _f(sig[len(sig) // 2])))
    return out


def _truth(js: dict, estimators: tuple[str, ...] = TRUTH_ESTIMATORS) -> Rows:
    return [(f"{r['estimator']}, {r['kind']}: AUROC (n = {r['n_runs']}); partial rho",
             f"{_f(r['auroc'], 2)} [{_f(r['auroc_lo'], 2)}, {_f(r['auroc_hi'], 2)}]; {_f(r['partial_spearman'], 2)}")
            for r in js["summary"] if r["estimator"] in estimators]


def _audit(js: dict) -> Rows:
    return _truth(js, tuple(dict.fromkeys(r["estimator"] for r in js["summary"])))


def _score_plane(js: dict) -> Rows:
    return [(f"{p['condition']} / {p['loss']}", f"classes {' & '.join(p['class_names'])}, {p['n_clips']} clips "
             f"({p['n_corrupted']} corrupted), targets {tuple(round(t, 2) for t in p['targets'])}")
            for p in js["panels"]]


def _landscape_1d(js: dict) -> Rows:
    return [(f"{label}: loss at alpha = 0 / largest rise along the line",
             f"{_f(c[len(c) // 2])} / {_f(max(c) - c[len(c) // 2])}") for label, c in js["curves"].items()]


def _landscape_2d(js: dict) -> Rows:
    return [(f"{label}: loss at the centre / range over the plane",
             f"{_f(s[len(s) // 2][len(s) // 2])} / {_f(min(map(min, s)))} to {_f(max(map(max, s)))}")
            for label, s in js["surfaces"].items()]


def _geometry(js: dict) -> Rows:
    return [(f"{cond} / {loss}: top eigenvalue, trace, epsilon-sharpness",
             f"{_f(v['top_eigenvalue'], 1)}, {_f(v['hessian_trace'], 1)}, {_f(v['epsilon_sharpness'])}")
            for cond, by_loss in js["statistics"].items() for loss, v in by_loss.items()]


def _class_precision(js: dict) -> Rows:
    s = js["summary"]
    out = [(f"{m}: mean precision over classes with predictions", f"{_f(s[m]['mean_precision'])} "
            f"({s[m]['classes_without_precision']} classes without a positive prediction)")
           for m in s if isinstance(s[m], dict) and "mean_precision" in s[m]]
    if "classes" in s:
        out.append(("classes where CSU is higher / lower / equal",
                    " / ".join(str(s["classes"][k]) for k in ("csu higher", "csu lower", "equal"))))
    return out


def _methods(js: dict, key: str = "method") -> Rows:
    out = []
    for r in js["table"]:
        text = _ci(r, "mean", "lo", "hi")
        paired = r.get("paired_mean")
        if paired is not None and not (isinstance(paired, float) and math.isnan(paired)):
            text += f"; paired difference {_f(paired)} [{_f(r.get('paired_lo'))}, {_f(r.get('paired_hi'))}]"
        out.append((f"{key} {r[key]}: test mAP", text))
    return out


def _history(js: dict) -> Rows:
    return [("epochs", str(len(js["epochs"]["epoch"]))), *((f"test {k}", _f(v)) for k, v in js["test"].items())]


def _quick_sigma(js: dict) -> Rows:
    t = js["table"]
    order = sorted(range(len(t["sigma"])), key=lambda i: -t["sigma"][i])[:3]
    return [("classes with the largest sigma (sigma, corruption rate)",
             "; ".join(f"{t['class_name'][i]} ({_f(t['sigma'][i])}, {_f(t['class_rate'][i], 2)})" for i in order))]


def _explorer(js: dict) -> Rows:
    sel = js["selection"]
    out = [("selection", ", ".join(f"{k} {v}" for k, v in sel.items()))]
    out += [(f"{r['method']}: test mAP, class precision, class sigma (n = {r['n']})",
             f"{_f(r['test.mAP'])}, {_f(r['class precision'])}, {_f(r['class sigma'])}") for r in js["table"]]
    return out


_READERS: dict[str, Callable[[dict], Rows]] = {
    "corruption_class_rates": _corruption_rates, "corruption_label_counts": _label_counts,
    "corruption_man_transitions": _transitions, "corruption_sln_soft_values": _soft_values,
    "degradation": _degradation, "degradation_uneven": _uneven, "relative_change": _relative,
    "sigma_trajectory": _trajectory, "sigma_kde": _kde,
    "sigma_vs_truth": _truth, "class_noise_audit": _audit, "score_plane": _score_plane,
    "landscape_1d": _landscape_1d, "landscape_2d": _landscape_2d, "landscape_geometry": _geometry,
    "class_precision": _class_precision, "method_comparison": _methods,
    "mask_sweep": lambda js: _methods(js, "percent"), "quickstart_history": _history, "quickstart_sigma": _quick_sigma,
    "explorer": _explorer,
}
