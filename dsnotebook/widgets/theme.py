"""The widgets' look: one small stylesheet on JupyterLab's theme variables, and CSS classes.

Colours never appear as fixed values in the widgets. A widget says what a part *is* with a CSS
class (``dsn-state-failed``, ``dsn-level-warn``, ...), and the stylesheet maps those classes to
JupyterLab's variables (``--jp-success-color1``, ``--jp-error-color1``, ``--jp-warn-color1``,
``--jp-brand-color1``), so the widgets follow the light and the dark theme alike.

Those variables are made for backgrounds and icons: as text, several of them fall below the
WCAG contrast of 4.5:1 (``--jp-warn-color1`` is 2.7:1 on white). Text colours are therefore the
theme's colour mixed with 35 % of its strongest text colour (``--jp-content-font-color0``: black
in light themes, white in dark ones), which moves them away from the background in either theme:
at least 5:1 on the light and dark backgrounds of JupyterLab 4. A browser without ``color-mix``
keeps the plain variable.

The stylesheet is a ``<style>`` element inside a hidden :class:`ipywidgets.HTML`; every top-level
widget of this package carries it, so a row shown alone in a cell is styled too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import ipywidgets as w

__all__ = ["STYLESHEET", "set_modifier", "stylesheet"]

#: Theme variable for each kind of colour; the CSS below only refers to these kinds.
_KINDS = {
    "success": "--jp-success-color1",
    "error": "--jp-error-color1",
    "warn": "--jp-warn-color1",
    "brand": "--jp-brand-color1",
}


def _text(kind: str) -> str:
    """``color`` declarations for readable text of one kind, plain variable first as the fallback."""
    var = _KINDS[kind]
    return f"color: var({var}); color: color-mix(in srgb, var({var}) 65%, var(--jp-content-font-color0));"


STYLESHEET = f"""
/* -- colours of states and levels ---------------------------------------------------------- */
.dsn-state-queued, .dsn-level-hint {{ color: var(--jp-ui-font-color1); }}
.dsn-state-running, .dsn-level-info {{ {_text("brand")} }}
.dsn-state-succeeded, .dsn-level-success {{ {_text("success")} }}
.dsn-state-failed, .dsn-level-error, .dsn-level-critical {{ {_text("error")} }}
.dsn-state-cancelled, .dsn-state-interrupted, .dsn-level-warn, .dsn-level-warning {{ {_text("warn")} }}
.dsn-level-hint {{ font-style: italic; }}
.dsn-level-warn, .dsn-level-critical {{ font-weight: bold; }}

/* -- one upload's row ----------------------------------------------------------------------- */
.dsn-task {{ width: 100%; min-width: 0; }}
.dsn-task-line {{ flex-wrap: wrap; align-items: center; column-gap: 0.9em; row-gap: 0; min-width: 0; }}
.dsn-task-group {{ flex-wrap: wrap; align-items: center; column-gap: 0.5em; min-width: 0; }}
.dsn-task-identity {{ flex: 1 1 24em; max-width: 40em; flex-wrap: nowrap; }}
.dsn-task-figures, .dsn-task-state {{ flex: 0 1 auto; }}
.dsn-task .widget-label {{ width: auto; margin: 0; flex: none; text-align: left; }}
.dsn-task .dsn-title {{ flex: 0 1 18em; min-width: 5em; }}
.dsn-task .dsn-bar {{ flex: 1 1 7em; min-width: 5em; margin: 0; }}
.dsn-task .dsn-percent {{ width: 3.2em; text-align: right; }}
.dsn-task .dsn-rows {{ min-width: 14em; text-align: right; }}
.dsn-task .dsn-rate {{ min-width: 7em; }}
.dsn-task .dsn-elapsed {{ min-width: 3.5em; text-align: right; }}
.dsn-task .dsn-eta {{ min-width: 5em; }}
.dsn-task .dsn-status {{ min-width: 6.5em; font-weight: bold; }}
.dsn-task .dsn-actions {{ width: 6.5em; flex: none; }}
.dsn-task .dsn-actions .jupyter-button {{ width: 100%; margin: 0; }}
.dsn-task .dsn-figure {{ font-variant-numeric: tabular-nums; }}
.dsn-task .dsn-error, .dsn-task .dsn-note {{ margin: 0; }}
.dsn-task-list > .dsn-task {{ border-bottom: var(--jp-border-width) solid var(--jp-border-color2); padding-bottom: 2px; }}
.dsn-task .dsn-error .widget-html-content, .dsn-task .dsn-note .widget-html-content {{
    line-height: 1.4; white-space: normal; overflow-wrap: anywhere;
}}

/* -- messages ------------------------------------------------------------------------------- */
.dsn-text {{ white-space: pre-wrap; overflow-wrap: anywhere; }}
.dsn-when {{ color: var(--jp-ui-font-color1); margin-right: 0.5em; font-variant-numeric: tabular-nums; }}
.dsn-message .widget-html-content, .dsn-notice .widget-html-content {{ line-height: 1.4; white-space: normal; }}
@keyframes dsn-fade-out {{ from {{ opacity: 1; }} to {{ opacity: 0; visibility: hidden; }} }}
.dsn-fades {{ animation: dsn-fade-out 1s ease-in 8s forwards; }}

/* -- the panel ------------------------------------------------------------------------------ */
.dsn-panel {{ max-width: 100%; min-width: 0; }}
.dsn-panel .jupyter-widget-tab {{ min-width: 0; max-width: 100%; }}
.dsn-panel .widget-tab-contents {{ min-width: 0; }}
.dsn-panel .jupyter-widget-tab .lm-TabBar {{ min-width: 0; }}
.dsn-panel .widget-inline-hbox {{ max-width: calc(100% - 2 * var(--jp-widgets-margin)); }}
.dsn-panel .dsn-form-field {{ width: 32em; }}
.dsn-toolbar {{ flex-wrap: wrap; align-items: center; column-gap: 0.5em; }}
.dsn-notice-line {{ align-items: center; min-width: 0; }}
.dsn-notice {{ flex: 1 1 auto; min-width: 0; }}
.dsn-notice-line .dsn-dismiss {{ flex: none; }}

/* -- tables: they fit, or scroll inside their own box ----------------------------------------- */
.dsn-table-box {{ min-width: 0; max-width: 100%; }}
.dsn-table-box > .widget-html-content {{ min-width: 0; max-width: 100%; }}
.dsn-scroll {{ overflow-x: auto; max-width: 100%; }}
.dsn-table {{ border-collapse: collapse; font-size: var(--jp-ui-font-size1); line-height: 1.5; }}
.dsn-table th, .dsn-table td {{
    padding: 1px 0.8em 1px 0; border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
    text-align: left; white-space: nowrap; vertical-align: top;
}}
.dsn-table th {{ font-weight: 600; }}
.dsn-table .dsn-num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.dsn-table .dsn-long {{ max-width: 24em; overflow: hidden; text-overflow: ellipsis; }}
.dsn-table .dsn-code {{ font-family: var(--jp-code-font-family); font-size: var(--jp-code-font-size); }}

/* -- the status strip ----------------------------------------------------------------------- */
.dsn-strip {{
    flex-wrap: wrap; align-items: center; column-gap: 1.2em; row-gap: 0; min-width: 0;
    padding: 0 0.5em; border-left: 3px solid var(--jp-border-color2);
}}
.dsn-strip.dsn-level-warn {{ border-left-color: var(--jp-warn-color1); }}
.dsn-strip.dsn-level-critical {{ border-left-color: var(--jp-error-color1); }}
.dsn-strip.dsn-level-warn, .dsn-strip.dsn-level-critical {{ color: inherit; font-weight: normal; }}
.dsn-strip .widget-label {{ width: auto; margin: 0; flex: none; font-variant-numeric: tabular-nums; }}
.dsn-strip .dsn-strip-note {{ color: var(--jp-ui-font-color2); }}
"""

_lock = threading.Lock()
_stylesheet: w.HTML | None = None


def stylesheet() -> w.HTML:
    """The hidden widget that carries :data:`STYLESHEET`, shared by every widget of this package."""
    global _stylesheet
    with _lock:
        if _stylesheet is None or _stylesheet.comm is None:  # none yet, or closed
            _stylesheet = w.HTML(f"<style>{STYLESHEET}</style>", layout=w.Layout(display="none")).add_class("dsn-stylesheet")
        return _stylesheet


def set_modifier(widget: w.DOMWidget, prefix: str, value: str | None) -> None:
    """Give ``widget`` the class ``prefix + value`` in place of any other class with that prefix."""
    kept: Iterable[str] = (c for c in widget._dom_classes if not c.startswith(prefix))
    classes = tuple(kept) + ((prefix + value,) if value else ())
    if classes != tuple(widget._dom_classes):
        widget._dom_classes = classes
