"""`python -m benchmarks`: render a variant, start it, load it, print and save the numbers."""

from benchmarks.run import main

if __name__ == "__main__":
    raise SystemExit(main())
