"""`python -m trainer` is `kamaal-train`."""

from trainer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
