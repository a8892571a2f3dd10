"""The racelens dashboard's entry point: the password gate, then the pages.

    racelens dashboard --out DIR [--port P] [--corrections FILE] [--password-file FILE]

runs `streamlit run dashboard/app.py --server.port P --server.headless true -- --out DIR`.
This file only registers the pages (in views/); each page reads its results through
dashboard.data.
"""

import streamlit as st

from dashboard import auth

st.set_page_config(page_title="racelens", page_icon=":material/timer:", layout="wide")
auth.require_password()
st.navigation(
    [
        st.Page("views/leaderboard.py", title="Leaderboard", icon=":material/leaderboard:"),
        st.Page("views/review.py", title="Review queue", icon=":material/fact_check:"),
        st.Page("views/stations.py", title="Stations", icon=":material/photo_camera:"),
        st.Page("views/athlete.py", title="Athlete", icon=":material/directions_run:"),
        st.Page("views/stats.py", title="Stats and export", icon=":material/download:"),
    ]
).run()
