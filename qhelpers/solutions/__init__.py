"""Reference solutions of the chapters' exercises: read them after trying, they are not run by the notebooks.

The unit tests run every checker against these (they must pass) and against
known wrong answers (they must fail with the right hint).
"""
