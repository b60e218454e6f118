"""Per-host progress on the terminal (stderr, so --json output stays clean)."""

from __future__ import annotations

from rich.console import Console


def host_progress(console: Console):
    """A rich progress display with one line per host: its current step, steps done, elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.fields[host]:<14}"),
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True, width=console.width),
        transient=False,
    )
