"""Stats and export: how much the pipeline settled by itself, and the results to download.

Downloads are the files of the results folder as they are: results.csv (for results
websites), each Parquet output, and the corrections log.
"""

from __future__ import annotations

import os

import streamlit as st

from dashboard import data, tallies, ui
from dashboard.review_queue import Spells, items_of, pending
from dashboard.settings import Settings
from transforms.schemas import RESULTS_CSV

DOWNLOADS_PER_ROW = 4
DOWNLOADS = (
    (RESULTS_CSV, "text/csv"),
    *((name, "application/vnd.apache.parquet") for name in data.PARQUET_FILES),
)


def show_figures(settings: Settings) -> None:
    images = data.images(settings.out)
    review = data.review(settings.out)
    log = data.corrections(settings.corrections, settings.out)
    spells = Spells.of(data.stations(settings.out), images)
    open_items = pending(items_of(review), log.corrections, spells)
    share = tallies.auto_resolved_share(images, log.corrections)
    figures = {
        "Photos": f"{len(images)}",
        "Settled automatically": "–" if share is None else f"{share:.1%}",
        "Open for review": f"{len(open_items)}",
        "Decisions logged": f"{len(log.corrections)}",
    }
    for column, (label, value) in zip(st.columns(len(figures)), figures.items(), strict=True):
        column.metric(label, value)
    ui.log_problems(log.problems)
    tables = {
        "Review items by reason": tallies.review_by_reason(
            review, {(i.image_id, i.reason) for i in open_items}
        ),
        "Photos by status": tallies.counts(images, "status", "Status"),
        "Duplicates": tallies.duplicates(images),
        "Decisions by action": tallies.decisions(log.corrections),
    }
    columns = st.columns(2) * 2
    for column, (title, table) in zip(columns, tables.items(), strict=True):
        with column:
            st.subheader(title)
            st.dataframe(table, hide_index=True)


def show_downloads(settings: Settings) -> None:
    st.subheader("Downloads")
    files = [(os.path.join(settings.out, name), mime) for name, mime in DOWNLOADS]
    files.append((settings.corrections, "text/csv"))
    columns = st.columns(DOWNLOADS_PER_ROW) * -(-len(files) // DOWNLOADS_PER_ROW)
    for column, (path, mime) in zip(columns, files, strict=False):
        name = os.path.basename(path)
        content = data.file_bytes(path)
        column.download_button(
            name if content is not None else f"{name} (none yet)",
            data=content or b"",
            file_name=name,
            mime=mime,
            disabled=content is None,
            key=f"download_{name}",
            icon=":material/download:",
            width="stretch",
        )


settings = ui.settings_or_stop()
ui.header("Stats and export", data.race(settings.out))
show_figures(settings)
show_downloads(settings)
