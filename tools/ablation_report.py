#!/usr/bin/python3
"""Turn the results of `iidm ablate` into charts and a one-file HTML report.

Usage: /usr/bin/python3 tools/ablation_report.py OUT_DIR

Reads OUT_DIR/results.json (written by `iidm ablate`) and writes into OUT_DIR:

  chart_nfe.png      the primary metric against U-Net forwards per image (log x axis)
  chart_seconds.png  the primary metric against seconds per image
  report.html        a self-contained page: title, machine/date/data lines, the results table,
                     the sample grid (OUT_DIR/<grid>), both charts and the notes; images are
                     embedded as base64 data URIs, the CSS is inline, nothing is fetched

results.json holds "title", "machine", "date", "data", "items", "primary_metric",
"primary_metric_label", "grid" (a PNG in OUT_DIR, or null for none), "columns" (each {"key",
"label", "group", "digits"}), "variants" (each {"name", "description", "flags", "metrics",
"cost" (objects or null)}; other keys are ignored) and "notes".  A table cell is
variants[i][column.group][column.key]; null or absent values show as an em dash.  The charts read
the primary metric from "metrics" (else "cost") and the costs from cost.nfe and
cost.seconds_per_image.  Variants whose name starts with "base" are drawn in their own colour;
two or more of them (base under different seeds) also get a shaded band from their lowest to
their highest value.

Each output is written to a temporary file in OUT_DIR and renamed into place.  A missing or
malformed results.json (or a missing grid image) ends the script with a one-line error naming the
file and, for a missing key, the key.  Needs the standard library and matplotlib (Agg backend);
run it with /usr/bin/python3.
"""

import argparse
import base64
import html
import io
import json
import math
import os
import shlex
import sys
import tempfile
import textwrap

# Debian's matplotlib finds its matplotlibrc in /etc, which only exists once the package is
# configured; fall back to the copy in the data package so an unconfigured install still works.
if not os.path.exists("/etc/matplotlibrc") and "MATPLOTLIBRC" not in os.environ:
    _DEBIAN_RC = "/usr/share/matplotlib/mpl-data/matplotlibrc"
    if os.path.exists(_DEBIAN_RC):
        os.environ["MATPLOTLIBRC"] = _DEBIAN_RC

import matplotlib  # noqa: E402  (after the environment fix above)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

RESULTS_NAME = "results.json"
CHART_NFE_NAME = "chart_nfe.png"
CHART_SECONDS_NAME = "chart_seconds.png"
REPORT_NAME = "report.html"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MISSING = "\u2014"  # em dash shown for null / unmeasured values

TOP_LEVEL_KEYS = {
    "title": str,
    "machine": str,
    "date": str,
    "data": str,
    "items": int,
    "primary_metric": str,
    "primary_metric_label": str,
    "columns": list,
    "variants": list,
    "notes": list,
}
COLUMN_KEYS = {"key": str, "label": str, "group": str}
VARIANT_KEYS = {"name": str, "description": str}
VARIANT_GROUPS = ("metrics", "cost")  # objects, or null when nothing was measured

FIG_SIZE = (7.0, 4.5)  # inches
DPI = 120
BASE_COLOUR = "#d62728"
VARIANT_COLOUR = "#1f77b4"
BAND_LABEL = "seed-to-seed spread of base"


class ReportError(Exception):
    """A problem with the input; its message is printed as the script's one-line error."""


# ----------------------------------------------------------------------------------------------
# Reading and checking results.json


def _type_name(expected):
    return {str: "a string", int: "an integer", list: "a list", dict: "an object"}[expected]


def _require(obj, keys, where, path):
    """Checks that the dict `obj` has every key in `keys` with the expected JSON type."""
    for key, expected in keys.items():
        if key not in obj:
            raise ReportError(f"{path}: missing key '{key}'{where}")
        value = obj[key]
        # bool is a subclass of int in Python; JSON true/false is not an item count.
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ReportError(f"{path}: key '{key}'{where} must be {_type_name(expected)}")


def load_results(path):
    """Returns the parsed and checked results.json at `path`, or raises ReportError."""
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except FileNotFoundError:
        raise ReportError(f"{path}: file not found (run `iidm ablate` first)") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot read: {e}") from None

    if not isinstance(results, dict):
        raise ReportError(f"{path}: the top level must be a JSON object")
    _require(results, TOP_LEVEL_KEYS, "", path)
    if "grid" not in results:
        raise ReportError(f"{path}: missing key 'grid'")
    if results["grid"] is not None and not isinstance(results["grid"], str):
        raise ReportError(f"{path}: key 'grid' must be a file name or null")

    for i, column in enumerate(results["columns"]):
        if not isinstance(column, dict):
            raise ReportError(f"{path}: columns[{i}] must be an object")
        _require(column, COLUMN_KEYS, f" in columns[{i}]", path)
        digits = column.get("digits")
        if digits is not None and (not isinstance(digits, int) or isinstance(digits, bool)
                                   or digits < 0):
            raise ReportError(
                f"{path}: key 'digits' in columns[{i}] must be a non-negative integer")

    for i, variant in enumerate(results["variants"]):
        if not isinstance(variant, dict):
            raise ReportError(f"{path}: variants[{i}] must be an object")
        _require(variant, VARIANT_KEYS, f" in variants[{i}]", path)
        for group in VARIANT_GROUPS:
            if group not in variant:
                raise ReportError(f"{path}: missing key '{group}' in variants[{i}]")
            if variant[group] is not None and not isinstance(variant[group], dict):
                raise ReportError(f"{path}: key '{group}' in variants[{i}] must be an object")
        flags = variant.get("flags", [])
        if not isinstance(flags, list):
            raise ReportError(f"{path}: key 'flags' in variants[{i}] must be a list")

    if not all(isinstance(note, str) for note in results["notes"]):
        raise ReportError(f"{path}: every entry of 'notes' must be a string")
    return results


def lookup(variant, group, key):
    """variant[group][key] as a finite float, or None when absent, null, non-numeric or NaN."""
    values = variant.get(group)
    value = values.get(key) if isinstance(values, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def is_base(variant):
    return variant["name"].startswith("base")


# ----------------------------------------------------------------------------------------------
# Writing files


def write_atomic(path, data):
    """Writes `data` (bytes) to `path` via a temporary file in the same directory and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------------------------
# Charts


def _overlap_area(a, b):
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _place_labels(ax, points, renderer):
    """Annotates each point with its name.  For each label, left to right, takes the first
    candidate offset whose box stays inside the axes and overlaps no marker, no label placed
    before it and not the legend; when every candidate collides, the one overlapping least."""
    candidates = [  # offset (dx, dy) in points, horizontal and vertical alignment
        ((6, 5), "left", "bottom"),
        ((6, -5), "left", "top"),
        ((-6, 5), "right", "bottom"),
        ((-6, -5), "right", "top"),
        ((0, 9), "center", "bottom"),
        ((0, -9), "center", "top"),
        ((10, 14), "left", "bottom"),
        ((10, -14), "left", "top"),
        ((-10, 14), "right", "bottom"),
        ((-10, -14), "right", "top"),
    ]
    axes_box = ax.get_window_extent(renderer)
    markers = []
    for point in points:
        px, py = ax.transData.transform((point.x, point.y))
        markers.append(Bbox([[px - 4, py - 4], [px + 4, py + 4]]))
    obstacles = []
    if ax.get_legend() is not None:
        obstacles.append(ax.get_legend().get_window_extent(renderer))

    for index in sorted(range(len(points)), key=lambda i: (points[i].x, points[i].y)):
        point = points[index]
        others = obstacles + markers[:index] + markers[index + 1:]
        best = None  # (cost, text artist, box)
        for offset, ha, va in candidates:
            text = ax.annotate(point.name, (point.x, point.y), xytext=offset,
                               textcoords="offset points", ha=ha, va=va, fontsize=7,
                               color="#333333")
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            cost = sum(_overlap_area(box, other) for other in others)
            if not (axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1
                    and axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1):
                cost += 1e6
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, text, box)
            else:
                text.remove()
            if cost == 0.0:
                break
        obstacles.append(best[2])


class _Point:
    def __init__(self, x, y, name, base):
        self.x, self.y, self.name, self.base = x, y, name, base


def _chart_points(results, x_key, log_x):
    """The (x = cost[x_key], y = primary metric) points, and the names of variants lacking one."""
    metric = results["primary_metric"]
    points, skipped = [], []
    for variant in results["variants"]:
        x = lookup(variant, "cost", x_key)
        y = lookup(variant, "metrics", metric)
        if y is None:
            y = lookup(variant, "cost", metric)
        if x is None or y is None or (log_x and x <= 0):
            skipped.append(variant["name"])
        else:
            points.append(_Point(x, y, variant["name"], is_base(variant)))
    return points, skipped


def make_chart(results, x_key, x_label, title_what, log_x):
    """Draws the primary metric against cost[x_key], one annotated point per variant; returns
    (PNG bytes, names of the variants left out because a value is missing)."""
    metric = results["primary_metric"]
    points, skipped = _chart_points(results, x_key, log_x)

    fig, ax = plt.subplots(figsize=FIG_SIZE, dpi=DPI)
    ax.set_title(f"{metric} against {title_what} ({results['items']} items)", fontsize=11)
    ax.set_xlabel(x_label, fontsize=9)
    ax.set_ylabel(textwrap.fill(results["primary_metric_label"], 42), fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, which="major", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    if not points:
        ax.text(0.5, 0.5, f"no variant has both {metric} and {title_what} measured",
                transform=ax.transAxes, ha="center", va="center", color="#777777")
        ax.set_xticks([])
        ax.set_yticks([])
        fig.tight_layout()
    else:
        base_ys = [p.y for p in points if p.base]
        if len(base_ys) >= 2:
            low, high = min(base_ys), max(base_ys)
            if high > low:
                ax.axhspan(low, high, color=BASE_COLOUR, alpha=0.12, linewidth=0, label=BAND_LABEL)
            else:
                ax.axhline(low, color=BASE_COLOUR, alpha=0.4, linewidth=1, linestyle="--",
                           label=BAND_LABEL + " (all equal)")
        # Base last and on top, so that a variant at the same spot cannot hide it.
        for base, colour, label, zorder in ((False, VARIANT_COLOUR, "variant", 3),
                                            (True, BASE_COLOUR, "base", 4)):
            chosen = [p for p in points if p.base == base]
            if chosen:
                ax.scatter([p.x for p in chosen], [p.y for p in chosen], s=28, color=colour,
                           edgecolor="white", linewidth=0.6, zorder=zorder, label=label)
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        _set_limits(ax, [p.x for p in points], [p.y for p in points], log_x)
        handles, labels = ax.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: labels[i] == "variant")  # base first
        ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=7,
                  loc="best", frameon=False)
        fig.tight_layout()
        fig.canvas.draw()  # fixes layout and legend position, so text boxes can be measured
        _place_labels(ax, points, fig.canvas.get_renderer())

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue(), skipped


def _set_limits(ax, xs, ys, log_x):
    """Pads the data range so that labels next to the outermost points fit inside the axes."""
    if log_x:
        low, high = math.log10(min(xs)), math.log10(max(xs))
        pad = max(0.25 * (high - low), 0.15)
        ax.set_xlim(10 ** (low - pad), 10 ** (high + pad))
    else:
        low, high = min(xs), max(xs)
        pad = 0.2 * (high - low) if high > low else max(abs(high) * 0.2, 0.5)
        ax.set_xlim(max(low - pad, 0.0) if low >= 0 else low - pad, high + pad)
    ylow, yhigh = min(ys), max(ys)
    ypad = 0.18 * (yhigh - ylow) if yhigh > ylow else max(abs(yhigh) * 0.05, 0.01)
    ax.set_ylim(ylow - ypad, yhigh + ypad)


# ----------------------------------------------------------------------------------------------
# HTML


def format_value(value, digits):
    """Formats a table cell: None/NaN as an em dash, numbers with `digits` decimals (thousands
    separated when digits is 0), or three significant figures when the column gives no digits."""
    if value is None or isinstance(value, bool):
        return MISSING if value is None else str(value).lower()
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return MISSING
        if digits is None:
            return f"{value:,}" if isinstance(value, int) else f"{value:.3g}"
        return f"{value:,.{digits}f}"
    return str(value)


def _data_uri(png):
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.4; }
h1 { margin-bottom: 0.2em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #555; margin: 0; }
.meta b { color: #333; font-weight: 600; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #e4e4e4; }
thead th { background: #f4f4f4; text-align: center; }
thead tr.groups th { border-bottom: 1px solid #ccc; font-weight: 600; color: #555; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.missing { color: #aaa; }
td.primary, th.primary { background: #fbf7e6; font-weight: 600; }
tr.base td:first-child { color: #b01e1e; font-weight: 600; }
code { font-size: 0.85em; color: #666; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figure { margin: 1em 0; }
figcaption { color: #666; font-size: 0.85em; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.charts figure { flex: 1 1 480px; margin: 0; }
"""


def _group_runs(columns):
    """Consecutive runs of columns with the same group, as (group, count) pairs."""
    runs = []
    for column in columns:
        if runs and runs[-1][0] == column["group"]:
            runs[-1][1] += 1
        else:
            runs.append([column["group"], 1])
    return runs


def render_table(results):
    esc = html.escape
    columns = results["columns"]
    primary = results["primary_metric"]
    group_cells = "".join(f'<th colspan="{count}">{esc(group)}</th>'
                          for group, count in _group_runs(columns))
    label_cells = []
    for column in columns:
        primary_class = ' class="primary"' if column["key"] == primary else ""
        where = f'{esc(column["group"])}.{esc(column["key"])}'
        label_cells.append(f'<th{primary_class} title="{where}">{esc(column["label"])}</th>')
    label_cells = "".join(label_cells)
    rows = []
    for variant in results["variants"]:
        cells = [f"<td>{esc(variant['name'])}</td>"]
        description = esc(variant["description"])
        flags = variant.get("flags") or []
        if flags:
            description += "<br><code>" + esc(shlex.join(str(f) for f in flags)) + "</code>"
        cells.append(f"<td>{description}</td>")
        for column in columns:
            group = variant.get(column["group"])
            value = group.get(column["key"]) if isinstance(group, dict) else None
            text = format_value(value, column.get("digits"))
            classes = ["num"]
            if text == MISSING:
                classes.append("missing")
            if column["key"] == primary:
                classes.append("primary")
            cells.append(f'<td class="{" ".join(classes)}">{esc(text)}</td>')
        row_class = ' class="base"' if is_base(variant) else ""
        rows.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    return (
        '<div class="scroll"><table>\n<thead>\n'
        f'<tr class="groups"><th colspan="2">variant</th>{group_cells}</tr>\n'
        f"<tr><th>Name</th><th>Description</th>{label_cells}</tr>\n"
        "</thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table></div>"
    )


def render_html(results, grid_png, charts):
    """The report page; `charts` is a list of (png_bytes, caption, skipped variant names)."""
    esc = html.escape
    title = results["title"]
    figures = []
    for png, caption, skipped in charts:
        note = ""
        if skipped:
            note = " Not plotted (value missing): " + esc(", ".join(skipped)) + "."
        figures.append(f'<figure><img src="{_data_uri(png)}" alt="{esc(caption)}">'
                       f"<figcaption>{esc(caption)}.{note}</figcaption></figure>")
    figures = "\n".join(figures)
    if grid_png is None:
        samples = '<p class="meta">No image grid (results.json names none).</p>'
    else:
        samples = (f'<figure><img src="{_data_uri(grid_png)}" alt="image grid">'
                   f'<figcaption>{esc(results["grid"])}</figcaption></figure>')
    notes = "\n".join(f"<li>{esc(note)}</li>" for note in results["notes"])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p class="meta"><b>Machine:</b> {esc(results["machine"])}</p>
<p class="meta"><b>Date:</b> {esc(results["date"])}</p>
<p class="meta"><b>Data:</b> {esc(results["data"])}</p>

<h2>Results</h2>
<p class="meta">Primary metric: <b>{esc(results["primary_metric"])}</b>,
{esc(results["primary_metric_label"])}. {MISSING} = not measured.</p>
{render_table(results)}

<h2>Samples</h2>
{samples}

<h2>Quality against cost</h2>
<div class="charts">
{figures}
</div>

<h2>Notes</h2>
<ul>
{notes}
</ul>
</body>
</html>
"""


# ----------------------------------------------------------------------------------------------


def read_grid(out_dir, name):
    """The grid PNG's bytes, or None when results.json names no grid (no images were made)."""
    if name is None:
        return None
    path = os.path.join(out_dir, name)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ReportError(f"{path}: cannot read the image grid named in {RESULTS_NAME}: "
                          f"{e.strerror}") from None
    if not data.startswith(PNG_SIGNATURE):
        raise ReportError(f"{path}: the image grid is not a PNG file")
    return data


def build_report(out_dir):
    """Writes the two charts and the report into out_dir; returns the paths written."""
    results = load_results(os.path.join(out_dir, RESULTS_NAME))
    grid_png = read_grid(out_dir, results["grid"])

    nfe_png, nfe_skipped = make_chart(results, "nfe", "U-Net forwards per image (NFE, log scale)",
                                      "U-Net forwards per image", log_x=True)
    seconds = [lookup(v, "cost", "seconds_per_image") for v in results["variants"]]
    seconds = [s for s in seconds if s is not None and s > 0]
    seconds_log = bool(seconds) and max(seconds) >= 10 * min(seconds)  # log only for wide ranges
    seconds_png, seconds_skipped = make_chart(
        results, "seconds_per_image",
        "seconds per image" + (" (log scale)" if seconds_log else ""), "seconds per image",
        log_x=seconds_log)

    charts = [
        (nfe_png, f"{results['primary_metric']} against U-Net forwards per image", nfe_skipped),
        (seconds_png, f"{results['primary_metric']} against seconds per image", seconds_skipped),
    ]
    page = render_html(results, grid_png, charts)

    written = []
    for name, data in ((CHART_NFE_NAME, nfe_png), (CHART_SECONDS_NAME, seconds_png),
                       (REPORT_NAME, page.encode("utf-8"))):
        path = os.path.join(out_dir, name)
        write_atomic(path, data)
        written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Charts and a self-contained HTML report from `iidm ablate`'s results.json.")
    parser.add_argument("out_dir", metavar="OUT_DIR",
                        help="the directory `iidm ablate` wrote results.json and the grid into")
    args = parser.parse_args(argv)
    try:
        if not os.path.isdir(args.out_dir):
            raise ReportError(f"{args.out_dir}: not a directory")
        written = build_report(args.out_dir)
    except ReportError as e:
        print(f"ablation_report: error: {e}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
