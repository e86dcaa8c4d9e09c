"""Markdown tables and the issue's bars from the JSON that bench/gpu_train.py writes."""

from __future__ import annotations

import json
import sys
from typing import Any

BAR_GRAPH_MS = 0.2  # ms per step at the default n, with the CUDA graph
BAR_GRAPH_SPEEDUP = 8.0  # graph vs eager, same n
BAR_LARGE = {"fp32/tf32": 0.6, "bf16": 1.2}  # G samples/s at n = 16M


def _f(v: Any, spec: str = ".3g") -> str:
    return "—" if v is None else format(v, spec) if isinstance(v, float) else str(v)


def _pick(rows: list[dict[str, Any]], key: str, **match: Any) -> Any:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()) and key in r:
            return r[key]
    return None


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def step_table(out: dict[str, Any]) -> list[str]:
    st, comp = out.get("step_time", []), out.get("compile", [])
    rows = []
    for case in dict.fromkeys(r["case"] for r in st + comp):
        ms = {m: _pick(st, "ms_per_step", case=case, mode=m) for m in ("eager", "static", "graph")}
        ms["compile"] = _pick(comp, "ms_per_step", case=case)
        ran = _pick(st, "ran", case=case, mode="graph")
        speed = ms["eager"] / ms["graph"] if ms["eager"] and ms["graph"] else None
        n, hidden = _pick(st + comp, "n", case=case), _pick(st + comp, "hidden", case=case)
        rows.append([case, str(hidden), str(n), *(_f(ms[m]) for m in ms), _f(speed), str(ran)])
    head = ["case", "hidden", "n", "eager ms", "static ms", "graph ms", "compile ms", "graph speedup", "graph ran as"]
    return _table(head, rows)


def throughput_table(out: dict[str, Any]) -> list[str]:
    tp, cl = out.get("throughput", []), out.get("compile_large", [])
    rows = []
    for n in dict.fromkeys(r["n"] for r in tp + cl):
        for p in ("fp32", "tf32", "bf16"):
            g = {m: _pick(tp, "gsamples_per_s", n=n, precision=p, mode=m) for m in ("eager", "static", "graph")}
            c = _pick(cl, "gsamples_per_s", n=n, precision=p)
            rows.append([str(n), p, *(_f(v) for v in g.values()), _f(c)])
    return _table(["n", "precision", "eager G/s", "static G/s", "graph G/s", "compile G/s"], rows)


def rmse_table(out: dict[str, Any]) -> list[str]:
    rows = [
        [str(r["mode"]), str(r.get("ran")), _f(r.get("test_rmse"), ".4f"), _f(r.get("best_val_loss")),
         _f(r.get("max_weight_diff_vs_eager")), str(r.get("bitwise_equal_to_first_run", "—")), _f(r.get("wall_s"))]
        for r in out.get("rmse", [])
    ]  # fmt: skip
    head = ["mode", "ran as", "test RMSE", "best val loss", "max |Δw| vs eager", "bitwise = 1st run", "wall s"]
    return _table(head, rows)


def bars(out: dict[str, Any]) -> list[str]:
    st, tp, rm = out.get("step_time", []), out.get("throughput", []), out.get("rmse", [])
    lines = []
    for case in ("default", "reference"):
        g = _pick(st, "ms_per_step", case=case, mode="graph")
        e = _pick(st, "ms_per_step", case=case, mode="eager")
        if g and e:
            ok = g <= BAR_GRAPH_MS and e / g >= BAR_GRAPH_SPEEDUP
            bar = f"bar ≤ {BAR_GRAPH_MS} ms and ≥ {BAR_GRAPH_SPEEDUP:g}×"
            n = _pick(st, "n", case=case)
            verdict = "PASS" if ok else "FAIL"
            lines.append(f"- {case} net, n = {n}: graph {g:.3f} ms/step, {e / g:.1f}× eager → {verdict} ({bar})")
    big = max((r["n"] for r in tp), default=None)
    large = tp + out.get("compile_large", [])
    for label, bar in BAR_LARGE.items():
        precisions = label.split("/")
        cands = [r for r in large if r.get("n") == big and r.get("precision") in precisions and "gsamples_per_s" in r]
        if cands:
            best = max(cands, key=lambda r: r["gsamples_per_s"])
            ok = best["gsamples_per_s"] >= bar
            lines.append(f"- n = {big}, {label}: best {best['gsamples_per_s']:.3f} G samples/s ({best['precision']}, "
                         f"{best['mode']}) → {'PASS' if ok else 'FAIL'} (bar ≥ {bar})")  # fmt: skip
    re_, rg = _pick(rm, "test_rmse", mode="eager"), _pick(rm, "test_rmse", mode="graph")
    if re_ and rg:
        lines.append(f"- final test RMSE: eager {re_:.4f}, graph {rg:.4f} (ratio {rg / re_:.3f})")
    reps = [r for r in rm if "bitwise_equal_to_first_run" in r]
    for r in reps:
        lines.append(f"- repeat of {r['mode']}: bitwise equal weights = {r['bitwise_equal_to_first_run']}")
    return lines


def markdown(out: dict[str, Any]) -> str:
    env = out.get("env", {})
    parts = ["Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), ""]
    parts += ["Step time (fp32, phase 1 of train()):", "", *step_table(out), ""]
    parts += ["Throughput per training step (G samples/s):", "", *throughput_table(out), ""]
    parts += ["Full default training (phase 1 + L-BFGS):", "", *rmse_table(out), ""]
    parts += ["Bars:", "", *(bars(out) or ["- (no data)"]), ""]
    for err in out.get("errors", []):
        parts.append(f"- error in {err.get('section')}: {err.get('error')}")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":  # python bench/gpu_report.py bench/results/gpu_train.json
    with open(sys.argv[1], encoding="utf-8") as f:
        print(markdown(json.load(f)))
