"""The Runs page's room: the history read back from run folders, the page that shows it, and the run
queue with its view.

Nothing is imported here eagerly: import the module you need (``desktop_app.runs.runs_page`` …).
"""
