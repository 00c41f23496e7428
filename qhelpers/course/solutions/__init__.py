"""Reference solutions of the chapters' exercises, one module each, outside the executed notebooks.

Not imported by the notebooks (they ship stubs); the unit tests run each checker of
:mod:`qhelpers.course.exercises` against these and against known wrong answers.
"""
