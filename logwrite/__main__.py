from logwrite.cli import main

main()
