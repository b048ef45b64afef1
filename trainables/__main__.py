from trainables.cli import main

main()
