"""Header and body rewriting for strip-prefix routes.

Apps that assume they live at `/` keep working under `/apps/<id>/`: root-relative URLs in headers,
HTML attributes, CSS and manifests get the route prefix, a `<base>` and a small URL interceptor are
injected into HTML. Paths listed in the route's `excludePaths` are left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Bodies bigger than this are streamed unchanged (the bound on buffering).
MAX_REWRITE_BYTES = 4 * 1024 * 1024
MAX_JS_BYTES = 50 * 1024

_TEXT_KINDS = {
    b"text/html": "html",
    b"application/xhtml+xml": "html",
    b"text/css": "css",
    b"application/json": "json",
    b"application/manifest+json": "manifest",
    b"application/javascript": "js",
    b"text/javascript": "js",
}


def body_kind(content_type: bytes, content_length: int | None, path: str) -> str | None:
    mime = content_type.split(b";", 1)[0].strip().lower()
    kind = _TEXT_KINDS.get(mime)
    if kind == "json" and path.endswith((".webmanifest", "manifest.json")):
        kind = "manifest"
    if kind == "js" and (content_length is None or content_length > MAX_JS_BYTES):
        return None
    if content_length is not None and content_length > MAX_REWRITE_BYTES:
        return None
    return kind


class Rewriter:
    """Rewrites URLs for one route prefix (`/apps/grafana`, no trailing slash)."""

    def __init__(self, prefix: str, exclude: Sequence[str]) -> None:
        self.prefix = prefix.rstrip("/")
        self.exclude = tuple(e for e in exclude if e)

    def excluded(self, path: str) -> bool:
        return any(path.startswith(e) for e in self.exclude)

    def should(self, url: str) -> bool:
        if not url.startswith("/") or url.startswith("//"):
            return False
        if url == self.prefix or url.startswith(self.prefix + "/"):
            return False
        if url == "/healthz" or url.startswith("/healthz/"):
            return False
        return not self.excluded(url)

    def url(self, url: str, host: str = "") -> str:
        stripped = url.strip()
        if self.should(stripped):
            return self.prefix + stripped
        if host and stripped.startswith(("http://", "https://")):
            parts = urlsplit(stripped)
            same_host = parts.netloc == host or parts.netloc.split(":")[0] == host.split(":")[0]
            if parts.netloc and same_host and self.should(parts.path or "/"):
                return urlunsplit(parts._replace(path=self.prefix + (parts.path or "/")))
        return url

    # -- headers ------------------------------------------------------------------------------------

    def headers(
        self, headers: list[tuple[bytes, bytes]], host: str, status: int
    ) -> list[tuple[bytes, bytes]]:
        out = []
        for name, value in headers:
            if name in (b"location", b"content-location") and (name != b"location" or 300 <= status < 400):
                value = self.url(value.decode("latin-1"), host).encode("latin-1")
            elif name == b"refresh":
                value = _REFRESH.sub(
                    lambda m: m.group(1) + self.url(m.group(2), host), value.decode("latin-1")
                ).encode("latin-1")
            elif name == b"link":
                value = _LINK.sub(
                    lambda m: "<" + self.url(m.group(1), host) + ">", value.decode("latin-1")
                ).encode("latin-1")
            elif name in (b"content-security-policy", b"content-security-policy-report-only"):
                value = self.csp(value.decode("latin-1")).encode("latin-1")
            out.append((name, value))
        return out

    def csp(self, policy: str) -> str:
        return _CSP_PATH.sub(lambda m: m.group(1) + self.url(m.group(2)), policy)

    def cookie_path(self, value: bytes) -> bytes:
        def repl(m: re.Match[str]) -> str:
            path = m.group(2)
            if path == "/":
                return m.group(1) + self.prefix + "/"
            return m.group(1) + (self.prefix + path if self.should(path) else path)

        return _COOKIE_PATH.sub(repl, value.decode("latin-1")).encode("latin-1")

    # -- bodies -------------------------------------------------------------------------------------

    def body(self, kind: str, text: str, request_path: str) -> str:
        if kind == "html":
            return self.html(text, request_path)
        if kind == "css":
            return self.css(text)
        if kind == "manifest":
            return self.manifest(text)
        return self.url_base(text)

    def css(self, text: str) -> str:
        text = _CSS_URL.sub(lambda m: m.group(1) + self.url(m.group(2)) + m.group(3), text)
        return _CSS_IMPORT.sub(lambda m: m.group(1) + self.url(m.group(2)) + m.group(3), text)

    def url_base(self, text: str) -> str:
        return _URL_BASE.sub(lambda m: m.group(1) + m.group(2) + self.prefix + m.group(3), text)

    def manifest(self, text: str) -> str:
        try:
            data: Any = json.loads(text)
        except ValueError:
            return self.url_base(text)
        if not isinstance(data, dict):
            return text
        for key in ("start_url", "scope"):
            if isinstance(data.get(key), str):
                data[key] = self.url(data[key])
        for icon in data.get("icons") or []:
            if isinstance(icon, dict) and isinstance(icon.get("src"), str):
                icon["src"] = self.url(icon["src"])
        return json.dumps(data)

    def html(self, text: str, request_path: str) -> str:
        def attr(m: re.Match[str]) -> str:
            name, quote, value = m.group(1), m.group(2), m.group(3)
            lname = name.lower()
            if lname == "srcset":
                new = ", ".join(self._srcset_item(item) for item in value.split(","))
            elif lname == "style":
                new = self.css(value)
            elif lname == "content":
                new = _REFRESH.sub(lambda r: r.group(1) + self.url(r.group(2)), value)
            else:
                new = self.url(value)
            return f"{m.group(0)[: m.start(3) - m.start(0)]}{new}{quote}"

        def tag(m: re.Match[str]) -> str:
            return _ATTR.sub(attr, m.group(0))

        def style_block(m: re.Match[str]) -> str:
            return m.group(1) + self.css(m.group(2)) + m.group(3)

        # Rewrite tags, keeping <script> contents (except urlBase) and comments intact.
        out: list[str] = []
        pos = 0
        for block in _SKIP_BLOCKS.finditer(text):
            out.append(_TAG.sub(tag, text[pos : block.start()]))
            chunk = block.group(0)
            if chunk.lower().startswith("<script"):
                open_end = chunk.find(">") + 1
                chunk = _TAG.sub(tag, chunk[:open_end]) + self.url_base(chunk[open_end:])
            elif chunk.lower().startswith("<style"):
                chunk = _STYLE.sub(style_block, chunk)
            out.append(chunk)
            pos = block.end()
        out.append(_TAG.sub(tag, text[pos:]))
        html = "".join(out)
        head = _HEAD.search(html)
        inject = ""
        if not _BASE.search(html):
            directory = self.prefix + request_path[: request_path.rfind("/") + 1]
            inject += f'<base href="{_escape(directory)}">'
        inject += _INTERCEPTOR.replace("__PREFIX__", json.dumps(self.prefix))
        if head:
            return html[: head.end()] + inject + html[head.end() :]
        return inject + html

    def _srcset_item(self, item: str) -> str:
        parts = item.strip().split(None, 1)
        if not parts:
            return item
        parts[0] = self.url(parts[0])
        return " ".join(parts)


def _escape(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


_REFRESH = re.compile(r"(\d+\s*;\s*url\s*=\s*['\"]?)([^'\";\s]+)", re.I)
_LINK = re.compile(r"<([^>]*)>")
_CSP_PATH = re.compile(r"(\s)(/[^\s;]*)")
_COOKIE_PATH = re.compile(r"(;\s*path\s*=\s*)([^;]*)", re.I)
_CSS_URL = re.compile(r"(url\(\s*['\"]?)([^'\")\s]+)(['\"]?\s*\))", re.I)
_CSS_IMPORT = re.compile(r"(@import\s+['\"])([^'\"]+)(['\"])", re.I)
_URL_BASE = re.compile(r"""(["']?urlBase["']?\s*:\s*)(['"])/?(['"])""")
_SKIP_BLOCKS = re.compile(r"<!--.*?-->|<script\b.*?</script\s*>|<style\b.*?</style\s*>", re.I | re.S)
_STYLE = re.compile(r"(<style\b[^>]*>)(.*?)(</style\s*>)", re.I | re.S)
_TAG = re.compile(r"<[A-Za-z][^<>]*>")
_ATTR = re.compile(
    r"""\s(src|href|action|formaction|poster|data|xlink:href|srcset|style|content)\s*=\s*(["'])(.*?)\2""",
    re.I | re.S,
)
_HEAD = re.compile(r"<head\b[^>]*>", re.I)
_BASE = re.compile(r"<base\b", re.I)

# Keeps client-side code that builds root-relative URLs inside the prefix.
_INTERCEPTOR = "".join(
    [
        '<script>(function(){var P=__PREFIX__;function fix(u){if(typeof u!=="string")return u;',
        'if(u.charAt(0)==="/"&&u.charAt(1)!=="/"&&u.indexOf(P+"/")!==0&&u!==P)return P+u;',
        "try{var x=new URL(u,location.href);",
        'if(x.host===location.host&&(x.protocol==="http:"||x.protocol==="https:"||x.protocol==="ws:"||x.protocol==="wss:")&&x.pathname.indexOf(P+"/")!==0&&x.pathname!==P){x.pathname=P+x.pathname;',
        "return x.toString();}}catch(e){}return u;}var f=window.fetch;",
        'if(f)window.fetch=function(i,o){if(typeof i==="string")i=fix(i);return f.call(this,i,o);};',
        "var xo=XMLHttpRequest.prototype.open;",
        "XMLHttpRequest.prototype.open=function(m,u){arguments[1]=fix(u);",
        "return xo.apply(this,arguments);};var W=window.WebSocket;",
        "if(W){window.WebSocket=function(u,p){return p===undefined?new W(fix(u)):new W(fix(u),p);};",
        "window.WebSocket.prototype=W.prototype;}var E=window.EventSource;",
        "if(E){window.EventSource=function(u,o){return new E(fix(u),o);};",
        "window.EventSource.prototype=E.prototype;",
        "}var ps=history.pushState,rs=history.replaceState;",
        "history.pushState=function(s,t,u){return ps.call(this,s,t,fix(u));};",
        "history.replaceState=function(s,t,u){return rs.call(this,s,t,fix(u));};})();</script>",
    ]
)
