from logread.cli import main

main()
