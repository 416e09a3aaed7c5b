"""SpurAudit dashboard (Streamlit): a thin face over the `core` engine and one workspace.

Start it with ``streamlit run dashboard/app.py``. Pages read the workspace, call `core`, render;
long work runs as jobs (`core.jobs`), never in the Streamlit process. All ``st.cache_*`` decorators
live in `dashboard.resources`.
"""
