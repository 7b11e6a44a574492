from gitbus.entry import main

main()
