"""The pattern every explorer follows, written once.

1. a *state* function (plain numbers in, arrays out) that does all the maths;
2. a *figure* function that draws a state with Matplotlib;
3. an :class:`Explorer`, which only wires ipywidgets controls to 1 and 2 and shows the PNG.

Tests call 1 and 2 without a browser; the browser tests operate 3.
"""

from __future__ import annotations

from ..plotting import figure_png


class Explorer:
    """Controls → ``state()`` → ``figure(state)`` → PNG in an ipywidgets ``Image``.

    A subclass creates its controls, defines ``state()`` and ``figure(state)``, and calls
    ``self._start(rows, watch)``: ``rows`` are the widgets shown above the picture (each an ipywidget),
    ``watch`` the controls whose value changes redraw. ``explorer.widget`` is the box to display,
    ``explorer.image.value`` holds the current PNG bytes, and ``explorer.update()`` redraws.
    """

    def state(self):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def figure(self, state):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _start(self, rows: list, watch: list) -> None:
        import ipywidgets as W

        self.image = W.Image(format="png")
        for control in watch:
            control.observe(lambda _change: self.update(), names="value")
        self.widget = W.VBox([*rows, self.image])
        self.update()

    def update(self) -> None:
        self.image.value = figure_png(self.figure(self.state()))
