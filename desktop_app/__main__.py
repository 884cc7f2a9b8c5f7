"""``python -m desktop_app`` is ``kamaal``."""

from desktop_app.launcher import main

if __name__ == "__main__":
    raise SystemExit(main())
