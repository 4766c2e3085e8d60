"""`python -m scheduler.cli`."""

from . import console_main

console_main()
