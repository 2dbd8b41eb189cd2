"""The report: a markdown table of every family's evaluations (stage 1, stage 2) and cost
(times, stage 2 over stage 1 and over the no-grad floor, peak memory), printed and written
to ``<out>/<results>.md``."""

from __future__ import annotations


def table(results: dict) -> str:
    """``results`` ({"<family>@<backbone>": {"run": ..., "cost": ...}}, the results JSON) as a
    markdown table, one row per family x backbone ("-" for cost when it was not measured)."""
    lines = [
        "| family | backbone | stage 1 | stage 2 | stage-1 it. | stage-2 it. | no-grad fwd | "
        "stage 2 / stage 1 | stage 2 / no-grad | peak MiB s1 / s2 / no-grad |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        name, bb = key.rsplit("@", 1)
        m1, m2 = r["run"]["stage1"]["metrics"], r["run"]["stage2"]["metrics"]
        if "bbox" in m1:
            ev1 = f"box AP {m1['bbox']['AP']:.2f}, mask AP {m1.get('segm', {}).get('AP', float('nan')):.2f}"
            ev2 = f"box AP {m2['bbox']['AP']:.2f}, mask AP {m2.get('segm', {}).get('AP', float('nan')):.2f}"
        elif "mIoU" in m1:
            ev1 = f"mIoU {m1['mIoU']:.2f}, tail {m1['tail_mIoU']:.2f}"
            ev2 = f"mIoU {m2['mIoU']:.2f}, tail {m2['tail_mIoU']:.2f}"
        else:
            ev1 = f"top-1 {m1['accuracy/top1']:.2f}, few {m1['accuracy/few_top1']:.2f}"
            ev2 = f"top-1 {m2['accuracy/top1']:.2f}, few {m2['accuracy/few_top1']:.2f}"
        c = r.get("cost")
        if c:
            ratio = c["ratios"]
            cost = (
                f"{c['stage1']['median_s']:.1f} s | {c['stage2']['median_s']:.1f} s | "
                f"{c['nograd']['median_s']:.1f} s | **{ratio['stage2_over_stage1_time']:.2f}x** | "
                f"**{ratio['stage2_over_nograd_time']:.2f}x** | "
                f"{c['stage1']['peak_bytes'] / 2**20:.0f} / {c['stage2']['peak_bytes'] / 2**20:.0f} / "
                f"{c['nograd']['peak_bytes'] / 2**20:.0f}"
            )
        else:
            cost = " | ".join(["-"] * 6)
        lines.append(f"| {name} | {bb} | {ev1} | {ev2} | {cost} |")
    return "\n".join(lines)
