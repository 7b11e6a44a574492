"""`python -m gitbus`: the same executable as `gitbus` (`gitbus.entry`), for when it is not on PATH."""

from gitbus.entry import main

main()
