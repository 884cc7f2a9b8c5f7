"""The Train page's room: the settings form (built from the config's declarations, validated as it is
edited), presets and settings files, the concept cards, the memory box and the frozen-layer block tree.

Nothing is imported here eagerly: import the module you need (``desktop_app.train.config_model`` …).
"""
