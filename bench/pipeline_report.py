"""The pipeline benchmark's report (bench/pipeline.py): the summary of a run, as printed in its
JSON line, and the plot of throughput and p99 latency against offered load."""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path


def log(message: str) -> None:
    print(f"[pipeline] {message}", file=sys.stderr, flush=True)


def summarize(args: argparse.Namespace, baseline: dict, peer: dict, result: dict) -> dict:
    base = baseline["drain_per_s"]
    flows_per_s = result["flows_per_s"]
    half = result["half"]

    def growth(start: dict, end: dict) -> dict:
        return {name: round(100 * (end[name] - mb) / mb, 1) if mb else None for name, mb in start.items()}

    series = result["rss_series"]
    rss_growth = growth(result["rss_start"], result["rss_end"])
    # From the end of the first max-rate batch: every web and pool process has served every
    # kind of flow by then (the warm-up's few flows reach some of them only).
    after_first = growth({k: v for k, v in series[1].items() if k != "flows"}, result["rss_end"])
    batches = result["batches"]
    return {
        "bench": "pipeline",
        "flows": args.flows,
        "mix": args.mix,
        "chunk": args.chunk,
        "clients": args.clients,
        "worker_concurrency": args.concurrency,
        "web_workers": args.web_workers,
        "baseline_drain_per_s": base,
        "flows_per_s": round(flows_per_s, 2),
        "ratio": round(flows_per_s / base, 4),
        "target_ratio": 0.2,
        "half": {
            "flows": args.half_flows,
            "offered_per_s": half["offered_per_s"],
            "flows_per_s": half["flows_per_s"],
            "latency": half["latency"],
            "latency_by_kind": half["latency_by_kind"],
            "target_p99_ms": 2000,
        },
        "max_latency": _merged_latency(batches),
        "buy_flows_per_s": round(
            sum(b["flows"] for b in batches) / sum(b["buy"]["seconds"] for b in batches), 1
        ),
        "rss_mb": {
            "start": result["rss_start"],
            "end": result["rss_end"],
            "growth_pct": rss_growth,
            "growth_after_first_batch_pct": after_first,
            "series": series,
        },
        "rss_flows": result["flows_total"] - args.warmup,
        "rss_flows_after_first_batch": result["flows_total"] - args.warmup - series[1]["flows"],
        "target_rss_growth_pct": 10,
        "peer": {
            "events": peer["events"],
            "project_live_per_s": peer["project"]["live_per_s"],
            "peer_live_per_s": peer["peer"]["live_per_s"],
            "project_drain_per_s": peer["project"]["drain_per_s"],
            "peer_drain_per_s": peer["peer"]["drain_per_s"],
            "flows_vs_peer_live": round(flows_per_s / peer["peer"]["live_per_s"], 4),
        },
        "batches": [
            {k: b[k] for k in ("label", "flows", "seconds", "flows_per_s", "post_seconds")} for b in batches
        ],
        "steps": [
            {
                "fraction": s["fraction"],
                "offered_per_s": s["offered_per_s"],
                "flows_per_s": s["flows_per_s"],
                "p99_ms": s["latency"]["p99_ms"],
                "p50_ms": s["latency"]["p50_ms"],
            }
            for s in result["steps"]
        ],
        "step_flows": args.step_flows,
        "dead_letters_new": result["dead_letters_new"],
        "baseline": {k: baseline[k] for k in ("tasks", "drain_per_s", "rabbitmq", "celery")},
    }


def _merged_latency(batches: list[dict]) -> dict:
    """The max-rate batches' latency summaries: the median of each percentile across batches."""
    keys = batches[0]["latency"].keys()
    return {k: round(statistics.median(b["latency"][k] for b in batches), 1) for k in keys}


def plot(summary: dict, path: Path) -> None:
    """Throughput and p99 latency against offered load (a line per figure, the targets dashed)."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font cache note, on stdout
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(summary["steps"], key=lambda s: s["offered_per_s"])
    offered = [s["offered_per_s"] for s in steps]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    left.plot(offered, [s["flows_per_s"] for s in steps], "o-", label="achieved")
    left.plot(offered, offered, ":", color="grey", label="offered")
    left.axhline(summary["flows_per_s"], linestyle="--", color="tab:red", label="max (closed loop)")
    left.set(xlabel="offered flows/s", ylabel="paid flows/s", title="Throughput")
    left.legend()
    right.plot(offered, [s["p99_ms"] / 1000 for s in steps], "o-", label="p99")
    right.plot(offered, [s["p50_ms"] / 1000 for s in steps], "s-", label="p50")
    right.axhline(2.0, linestyle="--", color="tab:red", label="target p99 2 s")
    right.set(xlabel="offered flows/s", ylabel="webhook -> confirmed, s", title="Latency")
    right.legend()
    fig.suptitle(
        f"bench/pipeline.py: max from {summary['flows']} flows ({summary['mix']}), "
        f"{summary['step_flows']} flows per step; baseline "
        f"{summary['baseline_drain_per_s']:,.0f} no-op tasks/s"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    log(f"plot written to {path}")
