"""Controls: the same samples run again under a condition that removes the evidence.

* :mod:`creg.controls.blank` -- the blank-image control (``creg run --control blank``): every
  sample again with its objects removed (same names and boxes), into ``RUN_DIR/blank``.
* :mod:`creg.controls.prior` -- what a source does on blanks: its peak directions against
  uniform (a chi-squared test) and its DAE on blanks next to its DAE on the scenes.
"""

#: the controls ``creg run --control`` accepts.
CONTROLS = ("blank",)
