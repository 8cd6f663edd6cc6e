"""LatentMap desktop app: Qt views over the headless engine in ``core``.

``app/components`` holds evented models (no Qt); ``app/_qt`` holds the widgets that subscribe
to them, as napari separates ``components`` from ``_qt``.
"""
