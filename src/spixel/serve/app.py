"""The Streamlit entry of ``spixel serve``: two pages, explore one image and browse a results store.

Run it with ``spixel serve`` (which sets ``SPIXEL_SERVE_*`` for the model, store, map cache and device and binds to
127.0.0.1), not ``streamlit run`` directly — though that works too, with the defaults.
"""

from __future__ import annotations

import streamlit as st

from spixel.serve import browse, explore

st.set_page_config(page_title="spixel explorer", page_icon="🔬", layout="wide")
page = st.navigation(
    [
        st.Page(explore.render, title="Explore one image", default=True),
        st.Page(browse.render, title="Browse a results store", url_path="browse"),
    ]
)
page.run()
