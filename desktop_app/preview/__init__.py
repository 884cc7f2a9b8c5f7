"""The live preview's room: what a run shows while it trains and afterwards — the run model the views
subscribe to, the stats line and banner, the loss and learning-rate plots, the weight heatmaps, and the
sample grid with its history, thumbnails and step comparison.

Nothing is imported here eagerly: import the module you need (``desktop_app.preview.run_model`` …).
"""
