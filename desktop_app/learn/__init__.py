"""The Learn page: the guide's lessons in the app, each a short text and a live experiment (issue 26)."""
