"""The pure engine core: a run is a history of events; ``decide`` says what happens next.

No I/O, no clock, no threads: time arrives as an argument, and everything the core decides comes
back as events (to append) and commands (for the shell around it to carry out).
"""
