"""The pipeline benchmark's report (bench/pipeline_report.py): the figures a run's JSON line
carries, computed from what the run measured, and the plot drawn from them."""

import argparse

from bench.pipeline_report import plot, summarize


def latency(p50: float, p99: float) -> dict:
    return {"p50_ms": p50, "p90_ms": p99, "p99_ms": p99, "max_ms": p99}


def measured() -> dict:
    def rss(web: float, worker: float) -> dict:
        return {"gunicorn": web, "worker": worker, "beat": 100.0}

    batch = {"flows": 1000, "seconds": 40.0, "flows_per_s": 25.0, "post_seconds": 2.0}
    return {
        "flows_per_s": 25.0,
        "batches": [
            {"label": f"max{k}", **batch, "latency": latency(30_000, 39_000), "buy": {"seconds": 50.0}}
            for k in range(2)
        ],
        "half": {
            "offered_per_s": 12.5,
            "flows_per_s": 12.4,
            "latency": latency(300, 900),
            "latency_by_kind": {},
        },
        "steps": [
            {
                "fraction": f,
                "offered_per_s": 25 * f,
                "flows_per_s": min(25 * f, 24),
                "latency": latency(400 * f, 900 * f),
            }
            for f in (0.5, 1.0, 1.5)
        ],
        "rss_start": rss(400, 500),
        "rss_series": [
            {"flows": 0, **rss(400, 500)},
            {"flows": 1000, **rss(440, 520)},
            {"flows": 2000, **rss(444, 530)},
        ],
        "rss_end": rss(444, 530),
        "flows_total": 2030,
        "dead_letters_new": 0,
    }


def test_the_summary_carries_the_ratio_latency_and_rss_growth_from_both_starts(tmp_path):
    args = argparse.Namespace(
        flows=2000,
        mix="order,booking,subscription",
        chunk=1000,
        clients=4,
        concurrency=4,
        web_workers=4,
        half_flows=500,
        warmup=30,
        step_flows=150,
    )
    baseline = {"tasks": 10_000, "drain_per_s": 1250.0, "rabbitmq": "4", "celery": "5"}
    peer = {
        "events": 2000,
        "project": {"live_per_s": 900, "drain_per_s": 1300},
        "peer": {"live_per_s": 600, "drain_per_s": 970},
    }

    summary = summarize(args, baseline, peer, measured())

    assert summary["ratio"] == 0.02  # 25 flows/s over 1,250 no-op tasks/s
    assert summary["half"]["latency"]["p99_ms"] == 900
    assert summary["buy_flows_per_s"] == 20.0
    growth = summary["rss_mb"]
    assert growth["growth_pct"] == {"gunicorn": 11.0, "worker": 6.0, "beat": 0.0}
    assert growth["growth_after_first_batch_pct"] == {"gunicorn": 0.9, "worker": 1.9, "beat": 0.0}
    assert (summary["rss_flows"], summary["rss_flows_after_first_batch"]) == (2000, 1000)
    assert [s["p99_ms"] for s in summary["steps"]] == [450, 900, 1350]

    path = tmp_path / "pipeline.png"
    plot(summary, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
