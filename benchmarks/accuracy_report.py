"""bench_accuracy.py's summaries, tables and verdicts: pure functions of its run records.

Per (recipe, train size): mean ± std over seeds per policy (std with ddof=1), Δ vs Full, and
for each pruned policy Δ vs the DynamicRandom run matched to its saving. A difference "exceeds
the seed spread" when |mean a − mean b| > sqrt(std_a² + std_b²): the seed-to-seed std of the
difference of two single runs. The issue's target per policy: saves ≥ 30% of the samples
forwarded, ≤ 0.5 points below Full (mean over seeds), and above its DynamicRandom by more than
the spread.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np

LABELS = {
    "full": "Full",
    "seta": "SeTa (paper: r=0.1, k=5, α=0.9)",
    "seta_target": "SeTa target_keep=0.6",
    "infobatch": "InfoBatch (r=0.5)",
    "repb": "RePB",
    "random_seta": "DynamicRandom (SeTa's saving)",
    "random_seta_target": "DynamicRandom (SeTa target's saving)",
    "random_infobatch": "DynamicRandom (InfoBatch's saving)",
    "random_repb": "DynamicRandom (RePB's saving)",
    "static_seta": "Static (SeTa's saving)",
}
PRUNED = ("seta", "seta_target", "infobatch", "repb")  # judged against the target
MIN_SAVED, MAX_DROP = 0.30, 0.005


def load(path: str, prog: str) -> dict[str, Any] | None:
    """The result JSON at `path`, or None after a one-line message on stderr."""
    try:
        with open(path) as f:
            result: dict[str, Any] = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{prog}: cannot read {path}: {e}", file=sys.stderr)
        return None
    return result


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Mean difference a − b in accuracy and whether it exceeds the seed-to-seed spread."""
    diff = a["acc_mean"] - b["acc_mean"]
    spread = math.hypot(a["acc_std"], b["acc_std"])
    n = min(a["seeds"], b["seeds"])
    return {"diff": diff, "spread": spread, "exceeds": None if n < 2 else abs(diff) > spread}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per policy over the successful runs of one (recipe, size)."""
    rows = []
    for key in LABELS:
        rs = [r for r in runs if r["policy"] == key and r["status"] == "ok"]
        if not rs:
            continue
        acc = np.array([r["accuracy"] for r in rs])
        rows.append(
            {
                "policy": key,
                "label": LABELS[key],
                "seeds": len(rs),
                "acc_mean": float(acc.mean()),
                "acc_std": float(acc.std(ddof=1)) if len(rs) > 1 else 0.0,
                "forwarded_mean": float(np.mean([r["forwarded"] for r in rs])),
                "saved_mean": float(np.mean([r["saved"] for r in rs])),
                "saved_min": float(min(r["saved"] for r in rs)),
                "saved_max": float(max(r["saved"] for r in rs)),
                "wall_s_mean": float(np.mean([r["wall_s"] for r in rs])),
            }
        )
    by = {r["policy"]: r for r in rows}
    for row in rows:
        row["vs_full"] = compare(row, by["full"]) if "full" in by else None
        rand = by.get(f"random_{row['policy']}")
        row["vs_random"] = compare(row, rand) if rand else None
    return rows


def verdict(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per pruned policy: the three checks of the issue's target and how far each is."""
    out = {}
    for row in rows:
        if row["policy"] not in PRUNED or row["vs_full"] is None:
            continue
        vr = row["vs_random"]
        beats = None if vr is None or vr["exceeds"] is None else vr["diff"] > vr["spread"]
        checks = {
            "saves_30pct": row["saved_mean"] >= MIN_SAVED,
            "within_half_point": row["vs_full"]["diff"] >= -MAX_DROP,
            "beats_random": beats,
        }
        out[row["policy"]] = {
            **checks,
            "meets_target": all(v is True for v in checks.values()),
            "saved_margin": row["saved_mean"] - MIN_SAVED,
            "acc_margin": row["vs_full"]["diff"] + MAX_DROP,
            "random_margin": None if vr is None else vr["diff"] - vr["spread"],
        }
    return out


def summarise_all(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One group per (recipe, train size), in the order the runs came."""
    keys = list(dict.fromkeys((r["recipe"], r["train"]) for r in runs))
    groups = []
    for recipe, train in keys:
        rows = summarise([r for r in runs if (r["recipe"], r["train"]) == (recipe, train)])
        groups.append({"recipe": recipe, "train": train, "rows": rows, "verdict": verdict(rows)})
    return groups


def _yes(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "no")


def _pt(x: float) -> str:
    return f"{x * 100:+.2f} pt".replace("-", "−")


def _cmp(c: dict[str, Any] | None) -> str:
    return "–" if c is None else f"{_pt(c['diff'])} ({_yes(c['exceeds'])})"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| policy | test acc (mean ± std) | samples forwarded | saved | wall s "
        "| Δ vs Full (exceeds spread?) | Δ vs DynamicRandom at equal saving (exceeds?) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        vs_full = "–" if r["policy"] == "full" else _cmp(r["vs_full"])
        lines.append(
            f"| {r['label']} | {r['acc_mean']:.2%} ± {r['acc_std']:.2%} "
            f"| {r['forwarded_mean']:,.0f} | {r['saved_mean']:.1%} | {r['wall_s_mean']:.1f} "
            f"| {vs_full} | {_cmp(r['vs_random'])} |"
        )
    return "\n".join(lines)


def verdict_lines(v: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for key, c in v.items():
        rnd = c["random_margin"]
        lines.append(
            f"- {LABELS[key]}: {'**meets the target**' if c['meets_target'] else 'misses'} — "
            f"saves ≥ 30%: {_yes(c['saves_30pct'])} ({_pt(c['saved_margin'])} of N·E), "
            f"≤ 0.5 pt below Full: {_yes(c['within_half_point'])} "
            f"(margin {_pt(c['acc_margin'])}), beats DynamicRandom beyond the spread: "
            f"{_yes(c['beats_random'])}" + ("" if rnd is None else f" (margin {_pt(rnd)})")
        )
    return lines


def render(result: dict[str, Any]) -> str:
    """The markdown of a whole result: per (recipe, size) a table and the verdict."""
    grid, runs = result["grid"], result["runs"]
    groups = result.get("groups") or summarise_all(runs)
    out = []
    for g in groups:
        seeds = max((r["seeds"] for r in g["rows"]), default=0)
        out += [
            f"### {g['recipe']} (lr {grid['lr'][g['recipe']]}), {g['train']:,} train / "
            f"{grid['test']:,} test, {grid['epochs']} epochs, {seeds} seed(s)",
            "",
            table(g["rows"]),
            "",
            *verdict_lines(g["verdict"]),
            "",
        ]
    met = {
        f"{g['recipe']} n={g['train']:,}": [k for k, c in g["verdict"].items() if c["meets_target"]]
        for g in groups
    }
    out.append("Target met (saves ≥ 30%, ≤ 0.5 pt below Full, beats DynamicRandom beyond spread):")
    out += [f"- {k}: {', '.join(LABELS[p] for p in v) or 'by no policy'}" for k, v in met.items()]
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        out += ["", f"{len(failed)} failed run(s):"]
        out += [
            f"- {r['recipe']} n={r['train']} {r['policy']} seed {r['seed']}: {r['error']}"
            for r in failed
        ]
    return "\n".join(out)
