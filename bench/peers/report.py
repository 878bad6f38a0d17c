"""bench/results/peers.md (Markdown tables, the targets and whether they hold) and peers.png (matplotlib) from the
figures `python -m bench.peers` measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.peers.http import HEADLINE, POINTS

# Issue 14's targets for the HTTP side (ratios within one run: the machine is shared).
TARGET_VS_AZML = 5.0
TARGET_VS_MLSERVER = 2.0
TARGET_IDLE_RSS_MB = 160.0
TARGET_COLD_START_S = 3.0


def _n(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def targets(http: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, holds) for each of issue 14's HTTP targets the run has figures for."""
    found: list[tuple[str, str, bool | None]] = []
    ours = http.get("ours")
    if ours is None:
        return found
    head = ours["points"][HEADLINE.label]
    for peer, factor in (("azmlinfsrv", TARGET_VS_AZML), ("mlserver", TARGET_VS_MLSERVER)):
        if peer not in http:
            continue
        other = http[peer]["points"][HEADLINE.label]
        ratio = head["rows_per_s"] / other["rows_per_s"] if other["rows_per_s"] else None
        lower_p99 = head["p99_ms"] is not None and other["p99_ms"] is not None and head["p99_ms"] < other["p99_ms"]
        measured = f"{_n(ratio, 1)}×, p99 {_n(head['p99_ms'], 1)} vs {_n(other['p99_ms'], 1)} ms"
        holds = ratio is not None and ratio >= factor and lower_p99
        found.append((f"{HEADLINE.label} rows/s ≥ {factor:g}× {peer}, lower p99", measured, holds))
    idle = ours["idle_rss_mb"]
    found.append((f"idle RSS ≤ {TARGET_IDLE_RSS_MB:g} MB (ONNX Runtime loaded)", f"{_n(idle)} MB", idle <= TARGET_IDLE_RSS_MB))
    cold = ours["cold_start_s"]
    found.append((f"cold start ≤ {TARGET_COLD_START_S:g} s", f"{_n(cold, 2)} s", cold <= TARGET_COLD_START_S))
    return found


def markdown(doc: dict[str, Any]) -> str:
    lines = [f"# `python -m bench.peers` — {doc['when']}", "", doc["conditions"], ""]
    http = doc.get("http")
    if http:
        names = list(http)
        lines += ["## HTTP: rows/s, p50 / p99 ms (closed loop, keep-alive where the server keeps it)", ""]
        lines += ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for point in POINTS:
            cells = []
            for name in names:
                p = http[name]["points"][point.label]
                fail = f", {p['failures']} failed" if p["failures"] else ""
                cells.append(f"{_n(p['rows_per_s'])} rows/s, {_n(p['p50_ms'], 1)} / {_n(p['p99_ms'], 1)} ms{fail}")
            lines.append(f"| {point.label} | " + " | ".join(cells) + " |")
        for label, key, digits, unit in (
            ("idle RSS", "idle_rss_mb", 0, "MB"),
            ("loaded RSS (peak)", "loaded_rss_mb", 0, "MB"),
            ("cold start (start → first score)", "cold_start_s", 2, "s"),
        ):
            lines.append(f"| {label} | " + " | ".join(f"{_n(http[n][key], digits)} {unit}" for n in names) + " |")
        versions = {n: ", ".join(f"{k} {v}" for k, v in vs.items()) for n, vs in doc.get("versions", {}).items()}
        lines += ["", "Versions: " + "; ".join(f"{n}: {v}" for n, v in versions.items())]
        if doc.get("mlserver_trials"):
            tried = ", ".join(f"{t['batching']}: {_n(t['rows_per_s'])} rows/s" for t in doc["mlserver_trials"])
            lines += ["", f"MLServer adaptive batching tried at {HEADLINE.label} (best measured): {tried}."]
    sdk = doc.get("sdk")
    if sdk:
        lines += ["", "## Through the local edge (real SDK, real Mosquitto): per share of each kind's capacity", ""]
        lines += ["| kind | capacity | share | msg/s | predictions/s | outputs/s | p50 / p99 ms | module CPU per msg |"]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for kind, got in sdk.items():
            for p in got["points"]:
                lines.append(
                    f"| {kind} | {_n(got['capacity'])} msg/s | {p['share']:.0%} | {_n(p['messages_per_s'])} | "
                    f"{_n(p['predictions_per_s'])} | {_n(p['outputs_per_s'])} | {_n(p['p50_ms'], 1)} / {_n(p['p99_ms'], 1)} | "
                    f"{_n(p['cpu_ms_per_message'], 2)} ms |"
                )
    if http:
        lines += ["", "## Targets (issue 14)", "", "| target | measured | holds |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {'yes' if h else 'no'} |" for t, m, h in targets(http)]
    return "\n".join(lines) + "\n"


def plot(doc: dict[str, Any], path: Path) -> bool:
    """peers.png: HTTP rows/s per load point and server, and p99; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    http = doc.get("http") or {}
    sdk = doc.get("sdk") or {}
    fig, axes = plt.subplots(1, 3 if sdk else 2, figsize=(16 if sdk else 11, 4.5))
    names = list(http)
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        xs = [i + k * width for i in range(len(POINTS))]
        axes[0].bar(xs, [http[name]["points"][p.label]["rows_per_s"] or 0 for p in POINTS], width, label=name)
        axes[1].bar(xs, [http[name]["points"][p.label]["p99_ms"] or 0 for p in POINTS], width, label=name)
    for ax, title in ((axes[0], "HTTP rows/s (log)"), (axes[1], "HTTP p99 latency, ms (log)")):
        ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(POINTS))], [p.label for p in POINTS])
        ax.set_yscale("log")
        ax.set_title(title)
        ax.legend(fontsize=8)
    if sdk:
        for kind, got in sdk.items():
            xs = [p["messages_per_s"] for p in got["points"]]
            axes[2].plot(xs, [p["p99_ms"] or 0 for p in got["points"]], marker="o", label=f"{kind} p99")
        axes[2].set_xlabel("messages/s (25, 50, 90% of capacity)")
        axes[2].set_ylabel("ms")
        axes[2].set_yscale("log")
        axes[2].set_title("Through the local edge: p99 latency")
        axes[2].legend(fontsize=8)
    fig.suptitle(f"bench.peers, {doc['when']}: {doc['conditions'].split(';')[0]}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
