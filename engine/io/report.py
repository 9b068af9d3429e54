"""Reports as `report.json` and a self-contained `report.html`: accuracy, confusion matrix, per-class bars, the
training curve as inline SVG, class areas. Jobs write both with their other outputs (`OutputSet`)."""
from __future__ import annotations

import html
import json


def _fmt(v, pct=False) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.1f} %" if pct else (f"{v:.3f}" if isinstance(v, float) else html.escape(str(v)))


def _ci(pair, pct=False) -> str:
    """A 95 % interval as "(lo–hi)", or "" when there is none."""
    if not pair or pair[0] is None:
        return ""
    lo, hi = (f"{100 * v:.1f}" for v in pair) if pct else (f"{v:.3f}" for v in pair)
    return f" ({lo}–{hi}{' %' if pct else ''})"


def _curve_svg(history: list[dict], width=560, height=220) -> str:
    """Training loss and validation mIoU per epoch, each scaled to the plot height."""
    if not history:
        return ""
    pad = 36
    xs = [h["epoch"] for h in history]
    x_of = (lambda e: pad + (e - xs[0]) / max(1, xs[-1] - xs[0]) * (width - 2 * pad))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="training curve"><rect width="100%" height="100%" fill="#fff" stroke="#ccc"/>']
    for key, color, label, fixed in (("loss", "#e15759", "training loss", None),
                                     ("val_miou", "#4e79a7", "validation mIoU", (0.0, 1.0))):
        vals = [(h["epoch"], h.get(key)) for h in history if h.get(key) is not None]
        if not vals:
            continue
        lo, hi = fixed or (min(v for _, v in vals), max(v for _, v in vals))
        span = (hi - lo) or 1.0
        pts = " ".join(f"{x_of(e):.1f},{height - pad - (v - lo) / span * (height - 2 * pad):.1f}" for e, v in vals)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        y = 16 if key == "loss" else 32
        parts.append(f'<text x="{pad}" y="{y}" font-size="12" fill="{color}">{label} '
                     f'({lo:.3g}–{hi:.3g})</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 8}" font-size="12" text-anchor="middle">epoch '
                 f'{xs[0]}–{xs[-1]}</text></svg>')
    return "".join(parts)


def _bars_svg(per_class: dict, colors: dict[str, str], key="f1", width=560) -> str:
    rows = list(per_class.items())
    bar_h, label_w = 20, 160
    height = bar_h * len(rows) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="per-class {key}">']
    for i, (name, m) in enumerate(rows):
        v = m.get(key)
        y = 5 + i * bar_h
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="12" text-anchor="end">'
                     f'{html.escape(name)}</text>')
        if v is not None:
            w = v * (width - label_w - 60)
            parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 6}" '
                         f'fill="{colors.get(name, "#888")}"/>')
            parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 14}" font-size="12">{v:.2f}</text>')
    return "".join(parts) + "</svg>"


def _accuracy_html(acc: dict, colors: dict[str, str], title: str) -> str:
    names = acc["confusion"]["classes"]
    cm = acc["confusion"]["matrix"]
    ci = acc.get("intervals") or {}
    f1_ci = ci.get("f1", {})
    out = [f"<h2>{html.escape(title)}</h2>",
           f"<p>{acc['pixels']} reference pixels · OA {_fmt(acc['oa'], True)}{_ci(ci.get('oa'), True)} · "
           f"AA {_fmt(acc['aa'], True)} · κ {_fmt(acc['kappa'])}{_ci(ci.get('kappa'))} · "
           f"mIoU {_fmt(acc['miou'])}</p>"]
    if ci:
        out.append(f"<p>In brackets: 95 % confidence intervals, {html.escape(ci['method'])}.</p>")
    if acc.get("near_boundary"):
        nb = acc["near_boundary"]
        out.append(f"<p>{100 * nb['validation']:.0f} % of these pixels lie within 2 px of a class boundary of the "
                   f"map, against {100 * nb['map']:.0f} % of all mapped pixels.</p>")
    out.append("<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>F1 95 % CI</th><th>IoU</th>"
               "<th>pixels</th></tr>")
    for name, m in acc["per_class"].items():
        out.append(f"<tr><td>{html.escape(name)}</td><td>{_fmt(m['precision'])}</td><td>{_fmt(m['recall'])}</td>"
                   f"<td>{_fmt(m['f1'])}</td><td>{_ci(f1_ci.get(name)).strip(' ()') or '–'}</td>"
                   f"<td>{_fmt(m['iou'])}</td><td>{m['reference_pixels']}</td></tr>")
    out.append("</table><h3>Per-class F1</h3>" + _bars_svg(acc["per_class"], colors))
    out.append("<h3>Confusion matrix (rows: reference, columns: predicted)</h3><table><tr><th></th>" +
               "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>")
    for name, row in zip(names, cm):
        total = sum(row) or 1
        cells = "".join(f'<td style="background:rgba(78,121,167,{v / total:.2f})">{v}</td>' for v in row)
        out.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return "".join(out) + "</table>"


def _areas_html(est: dict, colors: dict[str, str]) -> str:
    """Error-adjusted areas with their 95 % intervals, user's and producer's accuracy (Olofsson et al. 2014)."""
    unit = est["unit"]
    oa = est["overall_accuracy"]
    out = [f"<h2>Error-adjusted class areas</h2><p>{html.escape(est['method'])}, from {est['sample_pixels']} "
           f"validation pixels. Overall accuracy {_fmt(oa['estimate'], True)}{_ci(oa['ci95'], True)}.</p>",
           f"<table><tr><th>class</th><th>mapped {unit}</th><th>adjusted {unit}</th><th>95 % CI</th>"
           "<th>user's accuracy</th><th>producer's accuracy</th><th>sample px</th></tr>"]
    for name, c in est["classes"].items():
        ua, pa = c["users_accuracy"], c["producers_accuracy"]
        out.append(f'<tr><td><span style="color:{colors.get(name, "#888")}">■</span> {html.escape(name)}</td>'
                   f"<td>{_fmt(c['mapped'])}</td><td>{_fmt(c['adjusted'])}</td>"
                   f"<td>{_fmt(c['ci95'][0])}–{_fmt(c['ci95'][1])}</td>"
                   f"<td>{_fmt(ua['estimate'], True)}{_ci(ua['ci95'], True)}</td>"
                   f"<td>{_fmt(pa['estimate'], True)}{_ci(pa['ci95'], True)}</td><td>{c['sample_pixels']}</td></tr>")
    return "".join(out) + "</table>"


def render_html(report: dict) -> str:
    """A self-contained page for a fine-tuning or classification report."""
    classes = report.get("classes", {})
    colors = dict(zip(classes.get("names", []), classes.get("colors", [])))
    title = report.get("title", "SpecAware report")
    body = [f"<h1>{html.escape(title)}</h1>"]
    facts = report.get("facts", {})
    if facts:
        body.append("<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                                        for k, v in facts.items()) + "</table>")
    for w in report.get("warnings", []):
        body.append(f'<p class="warn">⚠ {html.escape(w)}</p>')
    if report.get("validation"):
        body.append(_accuracy_html(report["validation"], colors, report.get("validation_title",
                                                                            "Accuracy on held-out polygons")))
    elif "validation" in report:
        body.append("<p>No polygons were held out, so there is no independent accuracy.</p>")
    if report.get("adjusted_areas"):
        body.append(_areas_html(report["adjusted_areas"], colors))
    if report.get("history"):
        body.append("<h2>Training curve</h2>" + _curve_svg(report["history"]))
    if report.get("areas_ha"):
        body.append("<h2>Class areas</h2><table><tr><th>class</th><th>pixels</th><th>hectares</th></tr>" + "".join(
            f'<tr><td><span style="color:{colors.get(n, "#888")}">■</span> {html.escape(n)}</td>'
            f'<td>{report["pixel_counts"][n]}</td><td>{_fmt(a)}</td></tr>' for n, a in report["areas_ha"].items())
            + "</table>")
    style = ("body{font-family:sans-serif;max-width:900px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}.warn{color:#a15c00}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")


def report_files(report: dict) -> dict[str, str]:
    """`report.json` and `report.html` as texts, by file name."""
    return {"report.json": json.dumps(report, indent=1, default=str), "report.html": render_html(report)}
