"""Trace a user's own NumPy program: where, when and why it first created a NaN or an Inf.

The program runs as ``python`` would run it, under NumPy's floating-point error callbacks
(:mod:`.events`); a callback is made by NumPy only when an operation raised an IEEE flag, so until
then the program runs at full speed. The event is attributed to the innermost frame of the user's
own files (:mod:`.frames`), the op and its operands are read back from that source line
(:mod:`.evaluate`), the iteration of the enclosing loop comes from a targeted re-run
(:mod:`.loops`), and the cause is decided from the operands' numbers (:mod:`.cause`).
"""
