"""`python -m trainables ...`: the same CLI as `tune ...`, immune to which `tune` script is first on PATH."""
from trainables.cli import main

main()
