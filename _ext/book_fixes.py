"""Small Sphinx fixes for the book's HTML (loaded from _config.yml: sphinx.local_extensions).

* Inline scripts added after the builder starts (sphinx-thebe's ``const THEBE_JS_URL = ...``)
  are written twice by Sphinx 7.4, and the second copy throws "Identifier 'THEBE_JS_URL' has
  already been declared" in every page's console. Each script is kept once.
"""

from __future__ import annotations


def _unique_scripts(app, pagename, templatename, context, doctree):
    seen = set()
    unique = []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        key = (
            getattr(script, "filename", None) or "",
            tuple(sorted((k, str(v)) for k, v in attributes.items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _unique_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
