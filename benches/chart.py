#!/usr/bin/env python3
"""Turns the table that `cargo bench --bench pool` prints into an SVG bar chart.

    cargo bench --bench pool | tee pool.txt
    python3 benches/chart.py pool.txt > benches/pool.svg

For each benchmark with a Python anchor, the bars show how many times better than Python
multiproc and procspawn are (Python = 1; higher is better, whether the unit is speed, time
or memory).
"""
import re
import sys

LOWER_IS_BETTER = ("round trip", "resident memory", "pool start")


def parse(lines):
    rows = []
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("benchmark", "---"):
            continue
        name, ours, anchors = cells[0], cells[1], cells[2]
        value = re.match(r"[\d.]+", ours)
        if not value:
            continue
        ours = float(value.group())
        anchor = dict(
            (m.group(1).strip(), float(m.group(2)))
            for m in re.finditer(r"([A-Za-z ]+?) ([\d.]+)", anchors)
        )
        python = anchor.get("Python") or anchor.get("Python fork")
        if python is None:
            continue
        lower = name.startswith(LOWER_IS_BETTER)
        better = (lambda x: python / x) if lower else (lambda x: x / python)
        procspawn = anchor.get("procspawn")
        rows.append((name.split(":")[0], better(ours), better(procspawn) if procspawn else None))
    return rows


def svg(rows):
    width, bar, gap, left = 760, 14, 14, 230
    scale_max = max(max(r[1], r[2] or 0, 1.0) for r in rows)
    plot = width - left - 80
    height = 50 + len(rows) * (2 * bar + gap) + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="20" font-size="14" font-weight="bold">multiproc and procspawn, '
        "times better than Python's multiprocessing (Python = 1)</text>",
    ]
    x1 = left + plot / scale_max
    out.append(f'<line x1="{x1:.1f}" y1="30" x2="{x1:.1f}" y2="{height - 25}" stroke="#888" stroke-dasharray="4"/>')
    out.append(f'<text x="{x1 + 3:.1f}" y="{height - 12}" fill="#555">Python = 1</text>')
    y = 40
    for name, ours, procspawn in rows:
        out.append(f'<text x="10" y="{y + bar + 4}">{name}</text>')
        for value, colour, label in ((ours, "#d9480f", "multiproc"), (procspawn, "#1c7ed6", "procspawn")):
            if value is not None:
                w = plot * value / scale_max
                out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{colour}"/>')
                out.append(f'<text x="{left + w + 4:.1f}" y="{y + bar - 4}">{label} {value:.2f}x</text>')
            y += bar
        y += gap
    out.append("</svg>")
    return "\n".join(out)


if __name__ == "__main__":
    source = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    print(svg(parse(source)))
