"""`python -m dashboard.launch run streamlit_app.py [options]`: `streamlit run`, warming up the imports meanwhile.

`make run` and `make demo` start the app this way. The arguments are Streamlit's own. Streamlit imports nothing of
the app until the first browser session; this starts importing pandas, plotly, scipy, statsmodels... in a background
thread once Streamlit itself is imported (so the server answers as soon as before), and the first page view
finds them loaded. A plain `streamlit run streamlit_app.py` works the same, with a slower first page view.
"""
from __future__ import annotations

from streamlit.web import cli

from dashboard import warmup


def main() -> None:
    warmup.start(warmup.LAUNCH_MODULES)
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
