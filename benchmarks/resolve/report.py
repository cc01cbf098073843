"""Report: one Markdown table per archive, and a chart of time against size per tool."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from .datagen import MB, Archive
from .measure import Row

# What the chart draws, per data set: row key -> (label, style)
CHART_ROWS = {
    "hubcache_cold": ("hubcache cold", "o-"),
    "hubcache_cold_zlib": ("hubcache cold, stdlib zlib", "o:"),
    "curl_pigz_tar": ("curl | pigz -dc | tar -x", "s-"),
    "curl_tar": ("curl | tar -xzf", "s:"),
    "tfhub_cold": ("tensorflow_hub in-process", "^-"),
    "inflate_best": ("inflate alone, best decoder (the limit)", "k*--"),
}
# The far-link panel: the same tools where they have a far-link row, and the downloaders.
FAR_ROWS = {
    "far_hubcache": ("hubcache cold", "o-"),
    "far_tfhub": ("tensorflow_hub in-process", "^-"),
    "far_aria2c": ("aria2c -x8, download only", "D-"),
    "far_curl": ("curl, one stream, download only", "v:"),
}
FAR_PANEL = "far link"
PANEL_TITLES = {"demo": "small model (10 kB demo)"}


def fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "–"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.1f} µs"


def ratio(row: Row, ref: Optional[Row]) -> str:
    if ref is None or row.median is None or ref.median is None or ref.median <= 0:
        return "n/a"
    if row is ref:
        return "1.00×"
    return f"{row.median / ref.median:.2f}×"


def best_inflate(rows: Mapping[str, Row]) -> Optional[Row]:
    """The fastest decoder's inflate-alone row (by median)."""
    limits = [r for r in rows.values() if r.kind == "limit" and r.median is not None]
    return min(limits, key=lambda r: r.median or 0.0) if limits else None


def table(rows: Mapping[str, Row], archive: Archive) -> str:
    pigz, tf, limit = rows.get("curl_pigz_tar"), rows.get("tfhub_cold"), best_inflate(rows)
    refs: dict[str, tuple[Optional[Row], Optional[Row], Optional[Row]]] = {
        "limit": (pigz, tf, limit),
        "cold": (pigz, tf, limit),
        "call": (None, rows.get("tfhub_warm_call"), None),
        "cli": (None, None, None),
        "import": (None, None, None),
        "throttled": (rows.get("thr_curl_pigz_tar"), None, None),
    }
    lines = [
        f"### {archive.name}: {archive.archive_bytes / MB:.1f} MB archive, "
        f"{archive.extracted_bytes / MB:.1f} MB extracted "
        f"({archive.archive_bytes / max(archive.extracted_bytes, 1):.2f} of it), "
        f"{len(archive.manifest)} files",
        "",
        "| method | median | min | vs curl\\|pigz\\|tar | vs tensorflow_hub | vs inflate limit "
        "| peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows.values():
        if row.kind == "far":
            continue  # far_table()
        label = row.label.replace("|", "\\|")
        if row.skipped:
            lines.append(f"| {label} | skipped: {row.skipped} | | | | | |")
            continue
        if not row.samples:
            first = row.errors[0].splitlines()[0] if row.errors else "no samples"
            lines.append(f"| {label} | FAILED: {first[:90]} | | | | | |")
            continue
        vs_pigz, vs_tf, vs_limit = refs[row.kind]
        rss = "–"
        if row.rss_kb:
            rss = f"{statistics.median(row.rss_kb) / 1024:.0f}"
            if row.base_rss_kb and row.kind != "import":
                grow = statistics.median(row.rss_kb) - statistics.median(row.base_rss_kb)
                rss += f" (+{grow / 1024:.0f})"
        note = f" ({len(row.errors)} failed)" if row.errors else ""
        lines.append(
            f"| {label}{note} | {fmt_time(row.median)} | {fmt_time(row.minimum)} | "
            f"{ratio(row, vs_pigz)} | {ratio(row, vs_tf)} | {ratio(row, vs_limit)} | {rss} |"
        )
    lines += [
        "",
        "Peak RSS: a Python child's VmHWM (Linux; elsewhere ru_maxrss, in brackets the "
        "growth during the resolve call); pipelines: the sum of each process's ru_maxrss.",
    ]
    lines += [f"- {n}" for n in _notes(rows, archive)]
    far = far_table(rows)
    return "\n".join(lines) + (f"\n\n{far}" if far else "")


def far_table(rows: Mapping[str, Row]) -> str:
    """The far-link rows against aria2c's download-only time and tensorflow_hub's."""
    far = [r for r in rows.values() if r.kind == "far"]
    if not far:
        return ""
    aria, tf = rows.get("far_aria2c"), rows.get("far_tfhub")
    lines = [
        "| far link | median | min | ÷ aria2c -x8 (download only) | ÷ tensorflow_hub "
        "| peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in far:
        if row.skipped or not row.samples:
            why = row.skipped or (row.errors[0].splitlines()[0][:90] if row.errors else "none")
            state = "skipped" if row.skipped else "FAILED"
            lines.append(f"| {row.label} | {state}: {why} | | | | |")
            continue
        rss = f"{max(row.rss_kb) / 1024:.0f}" if row.rss_kb else "–"
        lines.append(
            f"| {row.label} | {fmt_time(row.median)} | {fmt_time(row.minimum)} | "
            f"{ratio(row, aria)} | {ratio(row, tf)} | {rss} |"
        )
    return "\n".join(lines)


def far_summary(results: Sequence[tuple[Archive, Mapping[str, Row]]], link: str) -> str:
    """One line per archive of the far-link rows, with the issue's two ratios."""
    lines = [
        f"### far link ({link}): median seconds",
        "",
        "| archive | hubcache | aria2c -x8 (download only) | curl (one stream) | tensorflow_hub "
        "| hubcache ÷ aria2c | tensorflow_hub ÷ hubcache | hubcache peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for archive, rows in results:
        hc = rows.get("far_hubcache")
        if hc is None:
            continue
        cells = [f"{archive.name} ({archive.archive_bytes / MB:.0f} MB)"]
        for key in ("far_hubcache", "far_aria2c", "far_curl", "far_tfhub"):
            r = rows.get(key)
            cells.append(fmt_time(r.median) if r is not None and r.median else "–")
        aria, tf = rows.get("far_aria2c"), rows.get("far_tfhub")
        cells.append(ratio(hc, aria))
        cells.append(f"{tf.median / hc.median:.1f}×" if tf and tf.median and hc.median else "n/a")
        cells.append(f"{max(hc.rss_kb) / 1024:.0f}" if hc.rss_kb else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _notes(rows: Mapping[str, Row], archive: Archive) -> list[str]:
    notes = []
    hc, tf, pigz = rows.get("hubcache_cold"), rows.get("tfhub_cold"), rows.get("curl_pigz_tar")
    for r in (hc, rows.get("hubcache_cold_zlib"), tf):
        if r and r.samples and r.extra.get("process_wall_s"):
            walls = r.extra["process_wall_s"][-len(r.samples) :]
            notes.append(
                f"{r.key}: inflater {r.extra.get('engine')}, whole-process wall median "
                f"{fmt_time(statistics.median(walls))}"
            )
    for r in (hc, pigz):
        if r and r.median:
            notes.append(f"{r.key}: {archive.archive_bytes / MB / r.median:.0f} MB/s of archive")
    imp = rows.get("import")
    if imp and imp.samples:
        it = imp.extra.get("importtime_cumulative_us")
        if it is not None:
            notes.append(f"-X importtime: hubcache cumulative {it / 1000:.1f} ms")
    d, o = rows.get("thr_hubcache_default"), rows.get("thr_hubcache_1conn")
    if d and o and d.median and o.median:
        notes.append(
            f"throttled: default / single connection = {d.median / o.median:.2f}× "
            "(< 1 means the default is faster)"
        )
    for r in rows.values():
        if r.extra.get("calls_per_rep"):
            notes.append(f"{r.key}: {r.extra['calls_per_rep']} calls per rep")
    return notes


def chart_points(results: Sequence[tuple[Archive, Mapping[str, Row]]]) -> dict[str, Any]:
    """{data set: {row key: [(archive MB, median s), ...]}} for the chart and the JSON."""
    points: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for archive, _rows in results:
        points.setdefault(archive.kind, {})  # data sets first, in order; far-link panels last
    for archive, rows in results:
        for panel, keys in ((archive.kind, CHART_ROWS), (f"{FAR_PANEL}, {archive.kind}", FAR_ROWS)):
            for key in keys:
                row = best_inflate(rows) if key == "inflate_best" else rows.get(key)
                if row is not None and row.median is not None:
                    per = points.setdefault(panel, {})
                    per.setdefault(key, []).append((archive.archive_bytes / MB, row.median))
    return {panel: per for panel, per in points.items() if per}


def chart(results: Sequence[tuple[Archive, Mapping[str, Row]]], path: str, title: str) -> str:
    """Write a PNG of time against archive size, one panel per data set; returns a note.

    matplotlib is a benchmark-only dependency: without it the chart is skipped, not the run.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FormatStrFormatter, NullFormatter
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install -e '.[bench]')"
    points = chart_points(results)
    if not points:
        return "chart skipped: no results"
    fig, axes = plt.subplots(1, len(points), figsize=(3.6 * len(points), 3.4), squeeze=False)
    seen: dict[str, Any] = {}  # legend label -> handle, over every panel
    for ax, (kind, per) in zip(axes[0], points.items(), strict=True):
        for key, (label, style) in (CHART_ROWS | FAR_ROWS).items():
            xy = sorted(per.get(key, []))
            if xy:
                (line,) = ax.plot(
                    [x for x, _ in xy], [y for _, y in xy], style, label=label, ms=4, lw=1.2
                )
                seen.setdefault(label, line)
        ax.set_title(PANEL_TITLES.get(kind, kind), fontsize=9)
        ax.set_xlabel("archive MB", fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(NullFormatter())
        ax.tick_params(labelsize=7)
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
    axes[0][0].set_ylabel("seconds (median)", fontsize=8)
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=4, fontsize=7,
               frameon=False)  # fmt: skip
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=90, metadata={"Software": None})  # no version: stable bytes
    plt.close(fig)
    return f"chart: {path}"


def summary(results: Sequence[tuple[Archive, Mapping[str, Row]]]) -> str:
    """One line per archive: the cold times side by side and hubcache's ratios to each."""
    lines = [
        "### summary: cold resolve, median seconds (ratio = hubcache cold / that column)",
        "",
        "| archive | hubcache cold | curl\\|pigz\\|tar | curl\\|tar | tensorflow_hub "
        "| inflate limit | hubcache peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for archive, rows in results:
        hc = rows.get("hubcache_cold")
        limit = best_inflate(rows)
        cells = [
            f"{archive.name} ({archive.archive_bytes / MB:.0f} MB)",
            fmt_time(hc and hc.median),
        ]
        for ref in (rows.get("curl_pigz_tar"), rows.get("curl_tar"), rows.get("tfhub_cold"), limit):
            if ref is None or ref.median is None:
                cells.append("–")
                continue
            what = f" {ref.key.split('_', 1)[1]}" if ref is limit else ""
            cells.append(f"{fmt_time(ref.median)}{what} ({ratio(hc, ref) if hc else 'n/a'})")
        cells.append(f"{max(hc.rss_kb) / 1024:.0f}" if hc and hc.rss_kb else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
