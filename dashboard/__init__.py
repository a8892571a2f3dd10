"""The racelens dashboard: a Streamlit app for race officials at the finish line.

Start it on the results of a run with `racelens dashboard --out DIR [--port P]`. The
entry point is `app.py`; each page lives in `views/`; all reading of results is in
`data.py`, and the review queue's logic in `review_queue.py`.
"""
