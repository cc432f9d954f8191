"""Sphinx configuration of the dada_ros documentation (rosdoc2 layout: Sphinx + MyST Markdown).

Build (warnings are errors, as in `make docs` and test/test_docs.py):

    python -m sphinx -W --keep-going -b html doc build/doc

Offline by design: no intersphinx, no remote images, the theme that ships with Sphinx.
"""

project = "dada_ros"
author = "dada_ros maintainers"
copyright = "dada_ros maintainers, BSD-3-Clause"  # noqa: A001 (Sphinx's own name)
release = "0.1.0"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# `[text](page.md#a-heading)` links resolve to the headings' GitHub-style slugs (h1-h3), so
# the same links work on GitHub and in the HTML build; a broken anchor is a warning (= error).
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = "dada_ros"
