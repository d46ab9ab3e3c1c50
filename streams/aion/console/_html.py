"""The console's HTML: one page layout (navigation, notices, style, the little script), and
helpers that build escaped markup. Everything is rendered on the server; the script only
re-fetches the parts of a page marked ``data-refresh`` while "live" is on."""

from __future__ import annotations

from html import escape
from typing import Any, Iterable, Sequence
from urllib.parse import urlencode

from ._format import iso

#: The pages of the navigation bar: (path, label).
NAV = (("/workflows", "Workflows"), ("/schedules", "Schedules"), ("/dlq", "Dead letters"), ("/events", "Events"))

_STYLE = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2b45;color:#fff;padding:0 20px;display:flex;align-items:center;gap:22px;height:46px}
header b{font-size:16px;letter-spacing:.3px} header a{color:#c9d4ea;text-decoration:none;padding:13px 2px}
header a.on{color:#fff;border-bottom:3px solid #6ea8ff} header .where{margin-left:auto;color:#8fa0c0;font-size:12px}
main{padding:16px 20px;max-width:1400px}
h1{font-size:20px;margin:4px 0 12px} h2{font-size:15px;margin:22px 0 8px;color:#33405a}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8}
th,td{padding:5px 8px;border-bottom:1px solid #e8eaef;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600;font-size:12px;color:#4a5570;text-transform:uppercase;letter-spacing:.3px}
td.num{text-align:right} .nw,a.mono{white-space:nowrap} tr:hover td{background:#fafbfd}
a{color:#1f5fcf} code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#fff;border:1px solid #dde1e8;padding:8px;overflow:auto;max-height:420px;margin:0}
form.inline{display:inline} .filters{display:flex;flex-wrap:wrap;gap:8px;align-items:end;background:#fff;
border:1px solid #dde1e8;padding:10px;margin-bottom:10px} .filters label{display:flex;flex-direction:column;font-size:12px;color:#4a5570}
input,select,textarea,button{font:inherit;padding:4px 6px;border:1px solid #b9c1d0;border-radius:4px;background:#fff}
button{background:#1f5fcf;color:#fff;border-color:#1f5fcf;cursor:pointer;padding:4px 12px}
button.danger{background:#b42318;border-color:#b42318} button.quiet{background:#fff;color:#1f5fcf}
.notice,.error{padding:8px 12px;border-radius:4px;margin-bottom:12px}
.notice{background:#e6f4ea;border:1px solid #9fd3ae} .error{background:#fdecea;border:1px solid #f1a9a0;color:#8a1c12}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:11.5px;font-weight:600;background:#e3e7ee;color:#33405a}
.s-RUNNING{background:#dbe9ff;color:#124ca8} .s-COMPLETED{background:#dcf3e3;color:#17663a}
.s-FAILED,.s-TERMINATED,.s-TIMED_OUT{background:#fde2df;color:#9b1c10} .s-CANCELLED{background:#fff1d6;color:#8a5a00}
.s-CONTINUED_AS_NEW{background:#ece4fb;color:#5b2fa8} .s-PAUSED{background:#fff1d6;color:#8a5a00}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px}
.card{background:#fff;border:1px solid #dde1e8;padding:10px 12px} .card h2{margin-top:0}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;margin:0} dl.kv dt{color:#5a6680}
dl.kv dd{margin:0;word-break:break-all}
.actions{margin-top:14px} .actions .card:last-child{grid-column:1/-1} .actions form{margin:0} .actions input{max-width:100%} .muted{color:#7a849a} .pager{margin:8px 0;display:flex;gap:12px;align-items:center}
.tl{position:relative;height:14px;background:#f0f2f6;border-radius:3px;min-width:120px}
.tl span{position:absolute;top:2px;height:10px;border-radius:2px;background:#6ea8ff;min-width:3px}
.tl span.fail{background:#e5533f} .tl span.done{background:#3aa564} .tl span.wait{background:#f0b43c}
.ev-Workflow{color:#124ca8} .ev-Activity{color:#17663a} .ev-Timer{color:#8a5a00} .ev-Signal{color:#5b2fa8}
.ev-Child{color:#0b6b74} code.chip{background:#eef1f6;border-radius:3px;padding:0 4px;font-size:11.5px;white-space:nowrap}
"""

_SCRIPT = """
(function(){
  const live=document.getElementById('live');
  function refresh(){
    if(live && !live.checked) return;
    document.querySelectorAll('[data-refresh]').forEach(function(el){
      fetch(el.dataset.refresh,{headers:{'X-Fragment':'1'}}).then(function(r){
        if(r.ok) return r.text(); throw new Error(r.status);
      }).then(function(html){ if(el.innerHTML!==html) el.innerHTML=html; }).catch(function(){});
    });
  }
  const every=parseInt(document.body.dataset.every||'0',10);
  if(every>0) setInterval(refresh, every);
})();
"""


def esc(value: Any) -> str:
    """``value`` as HTML text (None as an empty string)."""
    return "" if value is None else escape(str(value), quote=True)


def url(path: str, **params: Any) -> str:
    """``path`` with the non-empty ``params`` as its query string."""
    q = {k: v for k, v in params.items() if v not in (None, "", [])}
    return f"{path}?{urlencode(q, doseq=True)}" if q else path


def when(ms: int | None) -> str:
    """Epoch milliseconds as an ISO 8601 UTC time that does not wrap (``-`` for none)."""
    return f'<span class="nw">{esc(iso(ms))}</span>' if ms is not None else '<span class="muted">-</span>'


def badge(status: str | None, extra: str = "") -> str:
    s = status or "?"
    return f'<span class="badge s-{esc(s)}{extra}">{esc(s)}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str = "none", attrs: str = "") -> str:
    """A table of already-escaped cells."""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="muted">{esc(empty)}</td></tr>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv(pairs: Iterable[tuple[str, str]]) -> str:
    """A definition list of (label, already-escaped value)."""
    return '<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def messages(notice: str | None, error: str | None) -> str:
    out = ""
    if notice:
        out += f'<div class="notice" role="status">{esc(notice)}</div>'
    if error:
        out += f'<div class="error" role="alert">{esc(error)}</div>'
    return out


def live_toggle(every_ms: int, on: bool = True) -> str:
    """The "live" checkbox that turns the page's periodic refresh on and off."""
    return (f'<label class="muted"><input type="checkbox" id="live"{" checked" if on else ""}> '
            f'live (every {every_ms / 1000:g} s)</label>')


def page(title: str, body: str, *, active: str = "", where: str = "", notice: str | None = None,
         error: str | None = None, refresh_ms: int = 0) -> str:
    """A whole page: navigation (``active`` marks its path), notices, then ``body``."""
    nav = "".join(f'<a href="{p}"{" class=on" if p == active else ""}>{esc(label)}</a>' for p, label in NAV)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(title)} · Aion console</title>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<style>{_STYLE}</style></head>"
        f'<body data-every="{refresh_ms}"><header><b>Aion</b>{nav}<span class="where">{esc(where)}</span></header>'
        f"<main>{messages(notice, error)}{body}</main><script>{_SCRIPT}</script></body></html>"
    )
