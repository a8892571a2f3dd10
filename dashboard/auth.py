"""The optional password: when the dashboard has one, every page asks for it first.

The gate runs in the entry point before any page, so no page (nor a deep link to one)
shows anything to a session that has not given the password. The password typed is
compared in constant time and not kept in the session.
"""

from __future__ import annotations

import hmac
import time

import streamlit as st

from dashboard.settings import SettingsError, current_settings
from dashboard.ui import problem

SIGNED_IN = "signed_in"
PASSWORD_KEY = "password"
WRONG_KEY = "password_wrong"
WRONG_DELAY_S = 1.0  # slows down guessing; an official who mistypes barely notices


def _check(expected: str) -> None:
    typed = st.session_state.pop(PASSWORD_KEY, "") or ""
    if hmac.compare_digest(typed.encode(), expected.encode()):
        st.session_state[SIGNED_IN] = True
        st.session_state[WRONG_KEY] = False
    else:
        time.sleep(WRONG_DELAY_S)
        st.session_state[WRONG_KEY] = True


def require_password() -> None:
    """Returns when the session may see the pages; otherwise shows the sign-in form and stops."""
    try:
        expected = current_settings().password
    except SettingsError as e:
        # Fail closed: a password file that cannot be read lets nobody in.
        problem("The dashboard cannot start:", str(e))
        st.stop()
    if expected is None or st.session_state.get(SIGNED_IN):
        return
    st.title("racelens")
    with st.form("sign_in_form"):
        st.text_input("Password", type="password", key=PASSWORD_KEY)
        st.form_submit_button(
            "Sign in", key="sign_in", type="primary", on_click=_check, args=(expected,)
        )
    if st.session_state.get(WRONG_KEY):
        st.error("Wrong password.")
    st.stop()
