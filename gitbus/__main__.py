from gitbus.cli import main

main()
