"""Charts as data: what to draw (:mod:`.model`), built from results (:mod:`.run`, :mod:`.sweep`,
:mod:`.check`), drawn as inline SVG (:mod:`.svg`) or with matplotlib (``report/plot.py``)."""
