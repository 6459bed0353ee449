"""Self-contained HTML pages, one per result type: styles and charts inline, no script, nothing
fetched. ``RENDERERS`` maps a result type to its page builder."""

from nandoctor.report.html.check import check_page
from nandoctor.report.html.run import run_page
from nandoctor.report.html.sweep import sweep_page
from nandoctor.report.html.trace import trace_page

RENDERERS = {"run": run_page, "sweep": sweep_page, "check": check_page, "trace": trace_page}

__all__ = ["RENDERERS", "check_page", "run_page", "sweep_page", "trace_page"]
