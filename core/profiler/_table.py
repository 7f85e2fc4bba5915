"""The text table of ``EventList.table`` (PyTorch's column layout and number formats)."""

from __future__ import annotations

from ._events import _format_memory, _format_time


def build_table(
    events,
    sort_by,
    row_limit,
    max_src_column_width,
    max_name_column_width,
    max_shapes_column_width,
    header,
    top_level_events_only,
) -> str:
    rows = list(events)
    if top_level_events_only:
        rows = [e for e in rows if getattr(e, "cpu_parent", None) is None]
    if sort_by is not None:
        rows.sort(key=lambda e: getattr(e, sort_by), reverse=True)
    if row_limit is not None and row_limit > 0:
        rows = rows[:row_limit]
    has_device = any(e.device_time_total for e in events)
    has_memory = getattr(events, "_profile_memory", False) or any(
        e.cpu_memory_usage for e in events
    )
    has_shapes = getattr(events, "_grouped_shapes", False)
    has_stack = getattr(events, "_stack_n", 0) > 0

    name_w = min(max([len(e.key) for e in rows] + [len("Name")]) + 4, max_name_column_width)
    cols = [("Name", name_w)]
    num = ["Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg"]
    if has_device:
        num += ["Self CUDA", "Self CUDA %", "CUDA total", "CUDA time avg"]
    if has_memory:
        num += ["CPU Mem", "Self CPU Mem"]
    num += ["# of Calls"]
    cols += [(h, 12) for h in num]
    if has_shapes:
        cols.append(
            (
                "Input Shapes",
                min(
                    max([len(str(e.input_shapes)) for e in rows] + [12]) + 2,
                    max_shapes_column_width,
                ),
            )
        )
    if has_stack:
        cols.append(("Source Location", max_src_column_width))

    sep = "".join("-" * w + "  " for _, w in cols)
    line = "".join((h.ljust(w) if h == "Source Location" else h.rjust(w)) + "  " for h, w in cols)
    total_self = sum(e.self_cpu_time_total for e in events) or 1.0
    total_dev = sum(e.self_device_time_total for e in events) or 1.0
    out = []
    if header:
        out += ["=" * len(sep), header]
    out += [sep, line, sep]
    for e in rows:
        name = e.key if len(e.key) <= name_w - 4 else e.key[: name_w - 7] + "..."
        vals = [
            f"{100 * e.self_cpu_time_total / total_self:.2f}%",
            _format_time(e.self_cpu_time_total),
            f"{100 * e.cpu_time_total / total_self:.2f}%",
            _format_time(e.cpu_time_total),
            _format_time(e.cpu_time),
        ]
        if has_device:
            vals += [
                _format_time(e.self_device_time_total),
                f"{100 * e.self_device_time_total / total_dev:.2f}%",
                _format_time(e.device_time_total),
                _format_time(e.device_time),
            ]
        if has_memory:
            vals += [_format_memory(e.cpu_memory_usage), _format_memory(e.self_cpu_memory_usage)]
        vals.append(str(e.count))
        cells = [name.rjust(name_w)] + [v.rjust(12) for v in vals]
        if has_shapes:
            shapes = str(e.input_shapes)
            w = cols[len(cells)][1]
            cells.append((shapes if len(shapes) <= w else shapes[: w - 3] + "...").rjust(w))
        if has_stack:
            src = (e.stack or [""])[0]
            cells.append(src[:max_src_column_width].ljust(max_src_column_width))
        out.append("".join(c + "  " for c in cells))
    out.append(sep)
    out.append(f"Self CPU time total: {_format_time(sum(e.self_cpu_time_total for e in events))}")
    if has_device:
        out.append(
            f"Self CUDA time total: {_format_time(sum(e.self_device_time_total for e in events))}"
        )
    return "\n".join(out) + "\n"
